//! A container, exec probe or exec hook as a local process: environment cleared, inside the
//! pod's network namespace (`setns` before `exec`), with the container's uid, gid and the pod's
//! supplementary groups (fsGroup), in a process group of its own so that a stop reaches
//! everything the container started, and detached from the kubelet's lifetime (no kill on
//! drop): a kubelet killed with SIGKILL leaves its containers running for the next one to adopt.

use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// Everything needed to start one process of a pod.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The program (the mapcache or app binary, or a hook's command).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// `/var/run/netns/<name>` of the pod.
    pub netns: PathBuf,
    /// `runAsUser`; None keeps root.
    pub uid: Option<u32>,
    /// `runAsGroup`; None: 0, as for a numeric user of an image without `/etc/passwd`.
    pub gid: Option<u32>,
    /// Supplementary groups: `fsGroup` and `supplementalGroups` of the pod.
    pub groups: Vec<u32>,
    /// Working directory (`workingDir` rewritten, else `/`).
    pub workdir: PathBuf,
}

impl Launch {
    /// Where and as whom, for error messages.
    fn describe(&self) -> String {
        format!(
            "{} as uid {} gid {} in netns {}",
            self.program.display(),
            self.uid.unwrap_or(0),
            self.gid.unwrap_or(0),
            self.netns.display()
        )
    }

    /// The command with its netns and credentials switch. `output` receives stdout and stderr.
    fn command(&self, output: Option<&std::fs::File>) -> io::Result<tokio::process::Command> {
        let netns = std::fs::File::open(&self.netns).map_err(|e| {
            io::Error::new(e.kind(), format!("open netns {}: {e}", self.netns.display()))
        })?;
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .kill_on_drop(false)
            .process_group(0);
        match output {
            Some(file) => {
                command.stdout(file.try_clone()?).stderr(file.try_clone()?);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let switch_user = self.uid.is_some() || self.gid.is_some() || !self.groups.is_empty();
        let uid = self.uid.unwrap_or(0) as libc::uid_t;
        let gid = self.gid.unwrap_or(0) as libc::gid_t;
        let groups: Vec<libc::gid_t> = self.groups.iter().map(|g| *g as libc::gid_t).collect();
        // Moved into the closure so the descriptor stays open until the child has used it;
        // O_CLOEXEC (std's default) closes it in the child at exec.
        let netns_fd = netns;
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (setns, setgroups, setgid, setuid) on values prepared
        // before the fork; it allocates nothing and takes no locks.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(netns_fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if switch_user {
                    // Groups first: after setuid the process may no longer change them.
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(command)
    }

    /// Start a container; its output is appended to `log`.
    pub fn spawn(&self, log: &std::path::Path) -> Result<tokio::process::Child, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("open log {}: {e}", log.display()))?;
        let mut command = self.command(Some(&file)).map_err(|e| e.to_string())?;
        command.spawn().map_err(|e| self.spawn_error(&e))
    }

    fn spawn_error(&self, error: &io::Error) -> String {
        let hint = if error.kind() == io::ErrorKind::PermissionDenied && self.uid.is_some() {
            ": the user cannot execute the program or reach its working directory (every \
             directory above the binary must be world-executable)"
        } else {
            ""
        };
        format!("start {}: {error}{hint}", self.describe())
    }

    /// Run to completion (exec probe, exec hook) within `timeout`; the exit code. Output is
    /// appended to `log` when given. A process that outlives the timeout is killed.
    pub async fn run(
        &self,
        timeout: Duration,
        log: Option<&std::path::Path>,
    ) -> Result<i32, String> {
        let file = match log {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("open log {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let mut command = self.command(file.as_ref()).map_err(|e| e.to_string())?;
        let mut child = command.spawn().map_err(|e| self.spawn_error(&e))?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Ok(Exit::from_status(status).code),
            Ok(Err(error)) => Err(format!("wait for {}: {error}", self.program.display())),
            Err(_) => {
                if let Some(pid) = child.id() {
                    signal_group(pid, libc::SIGKILL);
                }
                let _ = child.wait().await;
                Err(format!("{} timed out after {timeout:?}", self.program.display()))
            }
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The exit code; 128 + n for death by signal n (as runtimes report it).
    pub code: i32,
    /// The signal that killed it, if it was one.
    pub signal: Option<i32>,
    /// False for an adopted process: not our child, so its status was never ours to read.
    pub known: bool,
}

impl Exit {
    pub fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Self { code, signal: None, known: true },
            (None, Some(signal)) => Self { code: 128 + signal, signal: Some(signal), known: true },
            (None, None) => Self { code: -1, signal: None, known: true },
        }
    }

    /// An adopted process that is gone: its exit status went to its new parent (init), not to
    /// us, so it is reported as killed (137, reason Error), the usual outcome of a stop.
    pub fn unknown() -> Self {
        Self { code: 137, signal: None, known: false }
    }
}

/// Signal a container's process group (it leads one), else the process alone.
pub fn signal_group(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory effects; a negative pid names the process group the
    // container leads (process_group(0) at spawn).
    let sent = unsafe { libc::kill(-pid, signal) };
    if sent != 0 {
        // SAFETY: as above, for the single process.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// A running container process.
#[derive(Debug)]
pub enum Running {
    /// Started by this kubelet: `wait` reaps it and gives its exit status.
    Child(tokio::process::Child),
    /// Adopted from a previous kubelet: watched through `/proc`.
    Adopted { pid: u32, start_ticks: u64 },
}

impl Running {
    /// Wait until the process is gone.
    pub async fn wait(self) -> Exit {
        match self {
            Running::Child(mut child) => match child.wait().await {
                Ok(status) => Exit::from_status(status),
                Err(error) => {
                    tracing::warn!(%error, "waiting for a container failed");
                    Exit::unknown()
                }
            },
            Running::Adopted { pid, start_ticks } => {
                while super::state::is_same_process(pid, start_ticks) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Exit::unknown()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_runtime_convention() {
        use std::os::unix::process::ExitStatusExt;
        let exited = Exit::from_status(std::process::ExitStatus::from_raw(2 << 8));
        assert_eq!(exited, Exit { code: 2, signal: None, known: true });
        let killed = Exit::from_status(std::process::ExitStatus::from_raw(libc::SIGKILL));
        assert_eq!(killed, Exit { code: 137, signal: Some(9), known: true });
        let terminated = Exit::from_status(std::process::ExitStatus::from_raw(libc::SIGTERM));
        assert_eq!(terminated.code, 143);
        assert_eq!(Exit::unknown().code, 137);
    }
}
