//! A container, exec probe or exec hook as a local process: environment cleared, inside the
//! pod's network namespace (`setns` before `exec`), with the container's uid, gid and the pod's
//! supplementary groups (fsGroup), in a process group of its own so that a stop reaches
//! everything the container started.
//!
//! Lifetimes differ by kind:
//! - a container is detached from the kubelet (no kill on drop): a kubelet killed with SIGKILL
//!   leaves it running for the next one to adopt. When its leader exits, the rest of its group
//!   is SIGKILLed, as a runtime kills every process of a container whose init process ended.
//! - an exec probe or hook lives only as long as the future that runs it: its group is
//!   SIGKILLed when it ends, times out, or is dropped (a prober aborted, a hook cut at the end
//!   of the grace period), so nothing it started outlives it.
//!
//! # Signals and reused pids
//! A pid names another process once the recorded one is reaped. So:
//! - a container is signalled only after checking the pid still is the recorded process (its
//!   start time, [`signal_container`]); one that is not gets nothing;
//! - a group is SIGKILLed after its leader exits while the leader is still unreaped where we are
//!   its parent (a pidfd tells the exit without reaping): the zombie keeps the pid, and with it
//!   the number of its group, from being handed out again. An adopted leader is reaped by init;
//!   then the number stays reserved as long as any member of the group is left, which is
//!   exactly when the kill has something to do;
//! - a process that escaped its group (`setsid`) is still in the pod's netns, which the pod's
//!   end sweeps (`network::kill_netns_processes`, checked on a pidfd per process).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Everything needed to start one process of a pod.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The program (the mapcache or app binary, or a hook's command).
    pub program: PathBuf,
    /// Its arguments, mount paths already rewritten.
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
    /// Working directory (`workingDir` mapped to the host, else `/`).
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
    pub fn spawn(&self, log: &Path) -> Result<tokio::process::Child, String> {
        let file = open_log(log)?;
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
    /// appended to `log` when given. Its process group is SIGKILLed when it exits, when it
    /// times out, and when this future is dropped.
    pub async fn run(&self, timeout: Duration, log: Option<&Path>) -> Result<i32, String> {
        let file = log.map(open_log).transpose()?;
        let mut command = self.command(file.as_ref()).map_err(|e| e.to_string())?;
        // The leader is killed and reaped by tokio if this future is dropped.
        command.kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| self.spawn_error(&e))?;
        // Declared after `child`, so dropped before it: the group is killed while the leader
        // is unreaped and its pid (the group's number) still reserved.
        let group = child.id().map(KillGroupOnDrop);
        let exited = async {
            if let Some(pid) = child.id() {
                exited_unreaped(pid).await;
            }
        };
        if tokio::time::timeout(timeout, exited).await.is_err() {
            return Err(format!("{} timed out after {timeout:?}", self.program.display()));
        }
        drop(group); // the leader has exited and is not reaped yet
        match child.wait().await {
            Ok(status) => Ok(Exit::from_status(status).code),
            Err(error) => Err(format!("wait for {}: {error}", self.program.display())),
        }
    }
}

/// A container's, probe's or hook's output file, appended to.
fn open_log(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("open log {}: {e}", path.display()))
}

/// SIGKILLs the process group of an exec probe or hook when dropped.
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        kill_group(self.0);
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

/// Signal a container, `pid` with the start time `start_ticks`: its process group (it leads
/// one), or the process alone if it left that group. Nothing is sent, and false returned, when
/// the pid is no longer that process (it ended; the pid may name another process by now).
pub fn signal_container(pid: u32, start_ticks: u64, signal: i32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else { return false };
    if !super::state::is_same_process(pid, start_ticks) {
        return false;
    }
    // SAFETY: kill(2) has no memory effects; a negative pid names the process group the
    // container leads (process_group(0) at spawn).
    if unsafe { libc::kill(-raw, signal) } == 0 {
        return true;
    }
    // No group of that number: the leader moved to another group or session, but it is still
    // the recorded process (checked above).
    // SAFETY: as above, for the single process.
    unsafe { libc::kill(raw, signal) == 0 }
}

/// SIGKILL the process group `pgid`, what is left of a container, probe or hook after its
/// leader ended. Callers do this while the leader's pid is still reserved (see the module docs).
pub fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return };
    if pgid <= 1 {
        return; // never the caller's own group or every process (kill(0), kill(-1))
    }
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// A pidfd (pidfd_open(2)): a handle on one process that a reused pid never redirects.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Send `signal` to `pid` if `still_ours(pid)` holds once a pidfd on it is open: the check and
/// the signal are about the same process even if the pid is reused in between.
pub fn signal_if(pid: u32, signal: i32, still_ours: impl Fn(u32) -> bool) -> bool {
    let Ok(fd) = pidfd_open(pid) else { return false };
    if !still_ours(pid) {
        return false;
    }
    // SAFETY: pidfd_send_signal on a descriptor we own, without siginfo (null) and flags 0.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    sent == 0
}

/// Wait until the process of `pidfd` has exited: the descriptor turns readable then (for a
/// child, before it is reaped).
async fn pidfd_exited(pidfd: OwnedFd) -> io::Result<()> {
    use tokio::io::{Interest, unix::AsyncFd};
    // SAFETY: an OwnedFd stays open and keeps its number for as long as the AsyncFd owns it.
    let fd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }?;
    fd.readable().await?.retain_ready();
    Ok(())
}

/// Wait until `pid` has exited, without reaping it. Without pidfd support (kernels before 5.3)
/// this polls `/proc` for a zombie or nothing.
async fn exited_unreaped(pid: u32) {
    if let Ok(fd) = pidfd_open(pid)
        && pidfd_exited(fd).await.is_ok()
    {
        return;
    }
    while super::state::process_start_ticks(pid).is_some() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A running container process.
#[derive(Debug)]
pub enum Running {
    /// Started by this kubelet: `wait` reaps it and gives its exit status.
    Child(tokio::process::Child),
    /// Adopted from a previous kubelet: watched through a pidfd (or `/proc`).
    Adopted { pid: u32, start_ticks: u64 },
}

impl Running {
    /// Wait until the process is gone, then SIGKILL what is left of its group.
    pub async fn wait(self) -> Exit {
        match self {
            Running::Child(mut child) => {
                if let Some(pid) = child.id() {
                    exited_unreaped(pid).await;
                    kill_group(pid);
                }
                match child.wait().await {
                    Ok(status) => Exit::from_status(status),
                    Err(error) => {
                        tracing::warn!(%error, "waiting for a container failed");
                        Exit::unknown()
                    }
                }
            }
            Running::Adopted { pid, start_ticks } => {
                // The pidfd is opened first: if the start time matches after that, the pidfd
                // is that process's.
                let pidfd = pidfd_open(pid);
                if !super::state::is_same_process(pid, start_ticks) {
                    // Gone before we looked: its pid may be another process's by now, so its
                    // group is not signalled (the pod's end sweeps the pod's netns).
                    return Exit::unknown();
                }
                let watched = match pidfd {
                    Ok(fd) => pidfd_exited(fd).await.is_ok(),
                    Err(_) => false,
                };
                if !watched {
                    poll_until_gone(pid, start_ticks).await;
                }
                // Its parent is init now, which reaps it at once; the group's number stays
                // reserved while any member is left, and those are what this kills.
                kill_group(pid);
                Exit::unknown()
            }
        }
    }
}

/// Poll `/proc` until `pid` is no longer the process started at `start_ticks`.
pub async fn poll_until_gone(pid: u32, start_ticks: u64) {
    while super::state::is_same_process(pid, start_ticks) {
        tokio::time::sleep(Duration::from_millis(200)).await;
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

    #[test]
    fn a_pid_that_is_not_the_recorded_process_gets_no_signal() {
        let pid = std::process::id();
        let ticks = super::super::state::process_start_ticks(pid).expect("our own stat");
        // Signal 0 checks deliverability only; a wrong start time means "another process".
        assert!(!signal_container(pid, ticks + 1, 0));
        assert!(signal_container(pid, ticks, 0));
        assert!(!signal_if(pid, 0, |_| false));
        assert!(signal_if(pid, 0, |_| true));
    }

    /// Runs `sh` in the test's own netns (the path of our own namespace).
    fn shell(script: &str) -> Launch {
        Launch {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            netns: "/proc/self/ns/net".into(),
            workdir: "/".into(),
            ..Launch::default()
        }
    }

    fn alive(pid: u32) -> bool {
        super::super::state::process_start_ticks(pid).is_some()
    }

    async fn read_pid(path: &Path) -> u32 {
        for _ in 0..100 {
            if let Some(pid) =
                std::fs::read_to_string(path).ok().and_then(|text| text.trim().parse().ok())
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no pid in {}", path.display());
    }

    #[tokio::test]
    async fn a_probe_takes_its_background_processes_along_when_it_ends_or_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, end, timeout) in [("ends", "exit 3", 30), ("times-out", "wait", 2)] {
            let pid_file = dir.path().join(name);
            let script = format!("sleep 600 & echo $! > {}; {end}", pid_file.display());
            let result = shell(&script).run(Duration::from_secs(timeout), None).await;
            match name {
                "ends" => assert_eq!(result, Ok(3)),
                _ => assert!(result.is_err_and(|e| e.contains("timed out after 2s"))),
            }
            poll_until_gone_or_zombie(read_pid(&pid_file).await).await;
        }
    }

    #[tokio::test]
    async fn a_dropped_hook_kills_its_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("hook");
        let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
        // Dropped while running, like a hook cut at the end of the grace period.
        let hook =
            tokio::spawn(async move { shell(&script).run(Duration::from_secs(600), None).await });
        let pid = read_pid(&pid_file).await;
        assert!(alive(pid));
        hook.abort();
        assert!(hook.await.is_err_and(|e| e.is_cancelled()));
        poll_until_gone_or_zombie(pid).await;
    }

    /// Reaped or a zombie waiting for init: either way no longer running.
    async fn poll_until_gone_or_zombie(pid: u32) {
        for _ in 0..100 {
            if !alive(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("process {pid} still runs");
    }
}
