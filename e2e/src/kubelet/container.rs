//! One container of a pod: how its spec becomes a process (image mapping, `$(VAR)` expansion,
//! path rewriting (`volumes::PathMap`), user and groups), how its probes and preStop hook run
//! in it, what the kubelet remembers about it between instances (restart count, last
//! termination, backoff), and its `containerStatuses` entry.
//!
//! Image mapping: an image containing `mapcache` runs `--mapcache-bin`; `command[0]` of
//! `mapcache` (or an empty command) is replaced by the binary, followed by the rest of the
//! command and the args. Any other image runs `--app-bin` with the container's env, and its
//! command and args are passed as arguments (the `sidecar-app` program ignores them). Init
//! containers that run to completion, exec probes and hooks of such images run their command
//! as a host program instead (`sh -c ...`), since the app stand-in never ends.

use super::env;
use super::probe::{self, Action, ProbeSpec, Probes};
use super::process::Launch;
use super::restart::Backoff;
use super::state::ContainerRecord;
use super::volumes::PathMap;
use super::{AbortOnDrop, KubeletConfig};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What kind of init container a container is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitKind {
    /// Runs to completion (exit 0) before the next one starts.
    ToCompletion,
    /// `restartPolicy: Always` (a native sidecar): started before the next one, then runs and
    /// restarts like a regular container.
    Sidecar,
}

/// The kubelet's view of one container.
pub struct ContainerRuntime {
    /// The container as the pod spec has it.
    pub spec: Container,
    /// Set for `initContainers`.
    pub init: Option<InitKind>,
    /// `<root>/logs/<ns>_<pod>_<container>.log`.
    pub log: PathBuf,
    /// What is persisted in the pod's state file.
    pub record: ContainerRecord,
    /// Id of the current process instance; events of older instances are ignored.
    pub instance: u64,
    /// When the current instance started (probe delays count from here).
    pub started_instant: Option<Instant>,
    /// Watches the current instance for its exit.
    pub monitor: Option<AbortOnDrop>,
    /// Probes the current instance.
    pub prober: Option<AbortOnDrop>,
    /// Crash-restart delays.
    pub backoff: Backoff,
    /// When to start it next (None while running or when it ended for good).
    pub next_start: Option<Instant>,
    /// Why it is not running (reason, message): CreateContainerConfigError, CrashLoopBackOff.
    pub waiting: Option<(String, String)>,
    /// Env, user, netns and working directory of its processes, once resolved.
    pub exec_base: Option<Launch>,
    /// The env as resolved, before path rewriting: what `$(VAR)` in a command expands to.
    pub env: Vec<(String, String)>,
    /// Where its paths are on the host.
    pub paths: PathMap,
    /// Its probes, resolved when it starts (readiness runs on alone while the pod terminates).
    pub probes: Probes,
    /// The kill of a failed liveness or startup probe (preStop, SIGTERM, grace, SIGKILL), while
    /// it runs: no second one, and the exit it causes restarts the container.
    pub liveness_kill: Option<AbortOnDrop>,
}

impl ContainerRuntime {
    pub fn new(spec: Container, log: PathBuf, record: ContainerRecord, backoff: Backoff) -> Self {
        Self {
            init: None,
            spec,
            log,
            record,
            instance: 0,
            started_instant: None,
            monitor: None,
            prober: None,
            backoff,
            next_start: Some(Instant::now()),
            waiting: None,
            exec_base: None,
            env: Vec::new(),
            paths: PathMap::default(),
            probes: Probes::default(),
            liveness_kill: None,
        }
    }

    pub fn running(&self) -> bool {
        self.record.pid.is_some()
    }

    /// Whether this container lets the ones after it start: a completed init container, a
    /// started sidecar; regular containers never gate.
    pub fn lets_next_start(&self) -> bool {
        match self.init {
            None => true,
            Some(InitKind::ToCompletion) => {
                self.record.final_termination.as_ref().is_some_and(|t| t.exit_code == 0)
            }
            Some(InitKind::Sidecar) => self.running() && self.record.started,
        }
    }

    /// Whether a container that exited with `code` starts again. `killed_for_probe`: the
    /// kubelet killed it for failing its liveness or startup probe, which restarts it under
    /// any policy but Never whatever its exit code (the kubelet's `shouldRestartOnFailure`).
    pub fn restarts(&self, restart_policy: &str, code: i32, killed_for_probe: bool) -> bool {
        match (self.init, restart_policy) {
            (Some(InitKind::Sidecar), _) => true,
            (Some(InitKind::ToCompletion), "Never") => false,
            (Some(InitKind::ToCompletion), _) => code != 0,
            (None, "Never") => false,
            (None, "OnFailure") => killed_for_probe || code != 0,
            (None, _) => true,
        }
    }

    pub fn is_mapcache(&self) -> bool {
        self.spec.image.as_deref().is_some_and(|image| image.contains("mapcache"))
    }

    /// Its `containerStatuses` entry. `pod_waiting` is why the whole pod cannot start yet.
    /// Readiness is the readiness probe's, also while the pod terminates, as the kubelet's.
    pub fn status(&self, pod_waiting: Option<&(String, String)>) -> ContainerStatus {
        let time = |t: &Option<jiff::Timestamp>| t.map(Time);
        let state = if self.record.pid.is_some() {
            ContainerState {
                running: Some(ContainerStateRunning { started_at: time(&self.record.started_at) }),
                ..ContainerState::default()
            }
        } else if let Some(done) = &self.record.final_termination {
            ContainerState { terminated: Some(done.clone()), ..ContainerState::default() }
        } else {
            let (reason, message) = self
                .waiting
                .clone()
                .or_else(|| pod_waiting.cloned())
                .unwrap_or_else(|| ("ContainerCreating".to_string(), String::new()));
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason),
                    message: Some(message).filter(|m| !m.is_empty()),
                }),
                ..ContainerState::default()
            }
        };
        let container_id = self.record.pid.map(|pid| format!("process://{pid}")).or_else(|| {
            self.record.final_termination.as_ref().and_then(|t| t.container_id.clone())
        });
        ContainerStatus {
            name: self.spec.name.clone(),
            image: self.spec.image.clone().unwrap_or_default(),
            image_id: format!("process://{}", self.spec.image.as_deref().unwrap_or_default()),
            container_id,
            ready: self.running() && self.record.ready,
            started: Some(self.running() && self.record.started),
            restart_count: self.record.restart_count,
            state: Some(state),
            last_state: Some(ContainerState {
                terminated: self.record.last_termination.clone(),
                ..ContainerState::default()
            })
            .filter(|s| s.terminated.is_some()),
            ..ContainerStatus::default()
        }
    }

    /// The termination record of the instance that just ended.
    pub fn termination(&self, exit: super::process::Exit) -> ContainerStateTerminated {
        ContainerStateTerminated {
            exit_code: exit.code,
            signal: exit.signal,
            reason: Some(if exit.code == 0 { "Completed" } else { "Error" }.to_string()),
            message: (!exit.known).then(|| {
                "adopted after a kubelet restart: the exit status was not observable".to_string()
            }),
            started_at: self.record.started_at.map(Time),
            finished_at: Some(super::status::now()),
            container_id: self.record.pid.map(|pid| format!("process://{pid}")),
        }
    }

    /// An exec probe's or hook's command as a process of this container: its env, user,
    /// netns and paths; the host's program of that name (module docs).
    pub fn exec_launch(&self, config: &KubeletConfig, command: &[String]) -> Launch {
        let base = self.exec_base.clone().unwrap_or_default();
        let target = Target { mapcache_image: self.is_mapcache(), container: false };
        program_launch(config, &base, target, command, &[], &self.env, &self.paths)
    }

    /// Its three probes, resolved against its ports and the pod IP.
    pub fn resolve_probes(&self, config: &KubeletConfig, pod_ip: &str) -> Probes {
        let exec = |command: &[String]| self.exec_launch(config, command);
        let spec = &self.spec;
        Probes {
            startup: ProbeSpec::of(spec.startup_probe.as_ref(), spec, pod_ip, &exec),
            readiness: ProbeSpec::of(spec.readiness_probe.as_ref(), spec, pod_ip, &exec),
            liveness: ProbeSpec::of(spec.liveness_probe.as_ref(), spec, pod_ip, &exec),
        }
    }

    /// What its preStop hook does, if it has one.
    pub fn pre_stop_action(&self, config: &KubeletConfig, pod_ip: &str) -> Option<Action> {
        let pre_stop = self.spec.lifecycle.as_ref()?.pre_stop.as_ref()?;
        if let Some(sleep) = &pre_stop.sleep {
            return Some(Action::Sleep(Duration::from_secs(sleep.seconds.max(0) as u64)));
        }
        let handler = probe::Handler {
            exec: pre_stop.exec.as_ref(),
            http_get: pre_stop.http_get.as_ref(),
            tcp_socket: pre_stop.tcp_socket.as_ref(),
        };
        let exec = |command: &[String]| self.exec_launch(config, command);
        probe::action(handler, &self.spec, pod_ip, &exec)
    }
}

/// What every process of a container shares: env, user, netns, working directory.
pub fn exec_base(
    pod: &Pod,
    container: &Container,
    env: &[(String, String)],
    paths: &PathMap,
    netns: PathBuf,
) -> Result<Launch, env::ConfigError> {
    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let security = container.security_context.as_ref();
    let as_u32 = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let uid =
        as_u32(security.and_then(|s| s.run_as_user).or(pod_security.and_then(|s| s.run_as_user)));
    let gid =
        as_u32(security.and_then(|s| s.run_as_group).or(pod_security.and_then(|s| s.run_as_group)));
    let non_root = security
        .and_then(|s| s.run_as_non_root)
        .or(pod_security.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root && uid.unwrap_or(0) == 0 {
        return Err(env::ConfigError(format!(
            "container {} has runAsNonRoot and would run as root (set runAsUser)",
            container.name
        )));
    }
    let mut groups: Vec<u32> = pod_security
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok())
        .into_iter()
        .collect();
    groups.extend(
        pod_security
            .and_then(|s| s.supplemental_groups.clone())
            .into_iter()
            .flatten()
            .filter_map(|g| u32::try_from(g).ok()),
    );
    let mut full_env = vec![
        ("PATH".to_string(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())),
        ("HOSTNAME".to_string(), pod.metadata.name.clone().unwrap_or_default()),
    ];
    if let Ok(level) = std::env::var("RUST_LOG") {
        full_env.push(("RUST_LOG".into(), level));
    }
    full_env.extend(env.iter().map(|(k, v)| (k.clone(), paths.rewrite(v))));
    let workdir = container
        .working_dir
        .as_deref()
        .map(|dir| paths.working_dir(dir))
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok(Launch {
        program: PathBuf::new(),
        args: Vec::new(),
        env: full_env,
        netns,
        uid,
        gid,
        groups,
        workdir,
    })
}

/// Which program a command line is for.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The container's image contains `mapcache`.
    pub mapcache_image: bool,
    /// A long-running container's own process (not an exec probe, hook or init container).
    pub container: bool,
}

/// The launch of `command` (+ `args`) for a container with this image: `$(VAR)`-expanded with
/// the container's env (as resolved, not yet rewritten), paths rewritten, and the program
/// mapped (module docs).
pub fn program_launch(
    config: &KubeletConfig,
    base: &Launch,
    target: Target,
    command: &[String],
    args: &[String],
    env: &[(String, String)],
    paths: &PathMap,
) -> Launch {
    let lookup = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let prepare = |value: &String| paths.rewrite(&env::expand(value, &lookup));
    let command: Vec<String> = command.iter().map(prepare).collect();
    let args: Vec<String> = args.iter().map(prepare).collect();
    let names_mapcache =
        command.first().is_some_and(|c| c == "mapcache" || c.ends_with("/mapcache"));
    let (program, argv) = if target.mapcache_image && (command.is_empty() || names_mapcache) {
        let rest = command.iter().skip(1).chain(args.iter()).cloned().collect();
        (config.mapcache_bin.clone(), rest)
    } else if target.container && !target.mapcache_image {
        (config.app_bin.clone(), command.iter().chain(args.iter()).cloned().collect())
    } else if let Some((first, rest)) = command.split_first() {
        // An exec probe or hook of any image, or a mapcache image running another program:
        // the host's program of that name.
        (PathBuf::from(first), rest.iter().chain(args.iter()).cloned().collect())
    } else {
        // No command at all (an init container relying on its image's entrypoint): nothing
        // of the image exists here, so it succeeds at once.
        (PathBuf::from("true"), args)
    };
    Launch { program, args: argv, ..base.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::volumes::Mount;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn images_map_to_the_mapcache_and_app_programs() {
        let config = KubeletConfig::for_test();
        let base = Launch::default();
        let paths = PathMap {
            mounts: vec![Mount {
                mount_path: "/data".into(),
                host_path: "/tmp/pv/x".into(),
                sub_path: false,
            }],
            scratch: "/r/pods/u/rootfs/engine".into(),
            kubelet_root: "/r".into(),
        };
        let env = vec![("PORT".to_string(), "6379".to_string())];
        let engine = program_launch(
            &config,
            &base,
            Target { mapcache_image: true, container: true },
            &strings(&["mapcache"]),
            &strings(&["serve", "--port=$(PORT)", "--data-dir=/data", "--log=/var/log/e.log"]),
            &env,
            &paths,
        );
        assert_eq!(engine.program, PathBuf::from("/bin/mapcache-dev"));
        assert_eq!(
            engine.args,
            strings(&[
                "serve",
                "--port=6379",
                "--data-dir=/tmp/pv/x",
                "--log=/r/pods/u/rootfs/engine/var/log/e.log"
            ])
        );
        let bare = program_launch(
            &config,
            &base,
            Target { mapcache_image: true, container: true },
            &[],
            &strings(&["serve"]),
            &env,
            &paths,
        );
        assert_eq!(
            (bare.program, bare.args),
            (PathBuf::from("/bin/mapcache-dev"), strings(&["serve"]))
        );
        let app = program_launch(
            &config,
            &base,
            Target { mapcache_image: false, container: true },
            &strings(&["sh", "-c", "sleep 1"]),
            &[],
            &env,
            &paths,
        );
        assert_eq!(app.program, PathBuf::from("/bin/sidecar-app"));
        assert_eq!(app.args, strings(&["sh", "-c", "sleep 1"]));
        let hook = program_launch(
            &config,
            &base,
            Target { mapcache_image: false, container: false },
            &strings(&["sh", "-c", "true"]),
            &[],
            &env,
            &paths,
        );
        assert_eq!((hook.program, hook.args), (PathBuf::from("sh"), strings(&["-c", "true"])));
    }

    #[test]
    fn init_containers_gate_the_next_and_restart_only_on_failure() {
        let container: Container =
            serde_json::from_value(serde_json::json!({"name": "c"})).expect("container");
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(2));
        let mut init =
            ContainerRuntime::new(container, "/l".into(), ContainerRecord::default(), backoff);
        init.init = Some(InitKind::ToCompletion);
        assert!(!init.lets_next_start());
        assert!(init.restarts("Always", 1, false) && !init.restarts("Always", 0, false));
        assert!(!init.restarts("Never", 1, false));
        init.record.final_termination =
            Some(ContainerStateTerminated { exit_code: 0, ..ContainerStateTerminated::default() });
        assert!(init.lets_next_start());
        init.init = Some(InitKind::Sidecar);
        assert!(!init.lets_next_start(), "a sidecar gates until it runs and has started");
        init.record.pid = Some(1);
        init.record.started = true;
        assert!(init.lets_next_start());
        assert!(init.restarts("Never", 0, false), "a sidecar always restarts");
        init.init = None;
        assert!(!init.restarts("OnFailure", 0, false) && init.restarts("OnFailure", 2, false));
        assert!(init.restarts("OnFailure", 0, true), "a liveness kill restarts even on exit 0");
        assert!(!init.restarts("Never", 1, true), "but never under Never");
    }

    #[test]
    fn run_as_non_root_without_a_user_is_a_config_error() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"securityContext": {"fsGroup": 65532, "supplementalGroups": [5]},
                     "containers": [{"name": "c"}]}
        }))
        .expect("pod");
        let mut container: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "securityContext": {"runAsNonRoot": true}}),
        )
        .expect("container");
        let paths = PathMap::default();
        let error = exec_base(&pod, &container, &[], &paths, "/x".into());
        assert!(error.is_err());
        container.security_context.as_mut().expect("sc").run_as_user = Some(65532);
        container.security_context.as_mut().expect("sc").run_as_group = Some(65533);
        let base = exec_base(&pod, &container, &[], &paths, "/x".into()).expect("base");
        assert_eq!(
            (base.uid, base.gid, base.groups.clone()),
            (Some(65532), Some(65533), vec![65532, 5])
        );
        let names: Vec<&str> = base.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(&names[..2], &["PATH", "HOSTNAME"]);
        assert_eq!(base.env[1].1, "p");
    }
}
