//! Child processes of the harness: each component of the cluster runs as one, with its log in a
//! file, owned by a guard that stops it on every exit path.
//!
//! No orphans: a guard that is dropped (normal end, panic) stops its process; a harness that dies
//! without unwinding (SIGKILL, `process::exit` past a static) takes its children along through
//! `PR_SET_PDEATHSIG`. That signal fires when the *thread* that forked the child exits, not the
//! process, and tokio runs code on pool threads that come and go (and every `#[tokio::test]` on a
//! thread of its own), so every child is forked by one spawner thread that lives as long as the
//! process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A request to the spawner thread: the command, the parent-death signal, where to answer.
type SpawnRequest = (Command, libc::c_int, mpsc::Sender<std::io::Result<Child>>);

/// The sender to the spawner thread, started on first use.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (requests, receiver) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("e2e-spawner".into())
            .spawn(move || {
                for (mut command, signal, answer) in receiver {
                    let _ = answer.send(spawn_with_parent_death_signal(&mut command, signal));
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(requests)
    })
}

fn spawn_with_parent_death_signal(
    command: &mut Command,
    signal: libc::c_int,
) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid, kill/_exit are all plain syscalls), touching no locks or heap.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then the signal never comes.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Start `command` as a child that receives `parent_death_signal` when this process dies.
pub fn spawn(command: Command, parent_death_signal: libc::c_int) -> std::io::Result<Child> {
    let (answer, receiver) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, parent_death_signal, answer))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    receiver.recv().map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// One component of the cluster as a child process, stopped when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    /// Component name, used in errors and log file names (`etcd`, `kube-apiserver`, ...).
    pub name: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// Signal that asks it to stop (SIGTERM; the process kubelet stops its pods on it).
    stop_signal: libc::c_int,
    /// How long `stop` waits after `stop_signal` before SIGKILL.
    stop_grace: Duration,
    child: Option<Child>,
}

impl ChildProcess {
    /// Run `program args` with output appended to `log`; the child gets `parent_death_signal`
    /// when this process dies.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        log: PathBuf,
        parent_death_signal: libc::c_int,
    ) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        let child = spawn(command, parent_death_signal).map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("start {name} ({}): {error}", program.display()),
            )
        })?;
        Ok(Self {
            name: name.to_string(),
            log,
            stop_signal: libc::SIGTERM,
            stop_grace: Duration::from_secs(10),
            child: Some(child),
        })
    }

    /// How long `stop` waits for the process after SIGTERM before it kills it.
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// Send `signal` now (e.g. SIGKILL in a scenario that kills a component).
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on the pid of our own child; we hold its `Child`, so it has not
            // been reaped and the pid cannot belong to another process.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// SIGTERM, wait up to the stop grace, SIGKILL; returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // SAFETY: as in `signal`: the child is ours and not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, self.stop_signal);
        }
        let deadline = Instant::now() + self.stop_grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(file) = std::fs::File::open(path) else { return String::new() };
    let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_child_is_stopped_and_its_output_is_in_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleeper.log");
        let args = vec!["-c".to_string(), "echo started; exec sleep 600".to_string()];
        let mut child =
            ChildProcess::start("sleeper", Path::new("/bin/sh"), &args, log.clone(), libc::SIGKILL)
                .unwrap();
        let pid = child.pid().unwrap();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        assert_eq!(child.exited(), None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while log_tail(&log, 1) != "started" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(child.log_tail(5), "started");
        drop(child);
        // Reaped by `stop`, so the pid is gone (not a zombie).
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    #[test]
    fn the_parent_death_signal_follows_the_forking_thread() {
        use std::os::unix::process::ExitStatusExt;
        // Forked straight from a short-lived thread: the child is killed when that thread ends,
        // although this process lives on. This is why `spawn` forks from one long-lived thread.
        let mut orphan = std::thread::spawn(|| {
            let mut command = Command::new("sleep");
            command.arg("600");
            spawn_with_parent_death_signal(&mut command, libc::SIGKILL).unwrap()
        })
        .join()
        .unwrap();
        let status = wait_with_deadline(&mut orphan, Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGKILL));

        // Through `spawn` from a short-lived thread: the spawner thread forked it, so it lives.
        let mut kept = std::thread::spawn(|| {
            let mut command = Command::new("sleep");
            command.arg("600");
            spawn(command, libc::SIGKILL).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(wait_with_deadline(&mut kept, Duration::from_millis(500)), None);
        kept.kill().unwrap();
        kept.wait().unwrap();
    }
}
