//! Probes and lifecycle handlers as the kubelet runs them. A container's prober is one task per
//! container instance: the startup probe first (it gates the others), then readiness and
//! liveness side by side, each at its own `periodSeconds` after `initialDelaySeconds` counted
//! from the container's start, with `timeoutSeconds`, `successThreshold` and `failureThreshold`.
//! Actions: `httpGet` (status 200-399 is success), `tcpSocket` (a connect), and `exec` (a
//! process in the pod's netns with the container's env; exit 0 is success).
//!
//! When the pod is being deleted the worker replaces the prober with one that runs readiness
//! alone, as the kubelet does: liveness and startup stop, and a terminating pod stays Ready
//! until its readiness probe fails (what endpoints, and whoever reads them, see).

use super::process::Launch;
use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a probe or handler does.
#[derive(Clone, Debug)]
pub enum Action {
    /// GET this URL.
    Http { url: String, headers: Vec<(String, String)> },
    /// Connect to this address.
    Tcp { address: String },
    /// Run this process to completion.
    Exec(Launch),
    /// Sleep (the lifecycle `sleep` action).
    Sleep(Duration),
    /// A handler we cannot run (gRPC, HTTPS, unknown port name): always fails, with this reason.
    Unsupported(String),
}

/// The parts of a probe or handler that say what to do.
pub struct Handler<'a> {
    pub exec: Option<&'a ExecAction>,
    pub http_get: Option<&'a HTTPGetAction>,
    pub tcp_socket: Option<&'a TCPSocketAction>,
}

/// Resolve a handler against the container (named ports) and the pod IP. `exec` turns a
/// command into a launch in the pod's netns with the container's env and user.
pub fn action(
    handler: Handler<'_>,
    container: &Container,
    pod_ip: &str,
    exec: &dyn Fn(&[String]) -> Launch,
) -> Option<Action> {
    if let Some(run) = handler.exec {
        return Some(Action::Exec(exec(run.command.as_deref().unwrap_or_default())));
    }
    if let Some(get) = handler.http_get {
        let Some(port) = port_number(&get.port, container) else {
            return Some(Action::Unsupported(format!("no port {:?} in the container", get.port)));
        };
        if get.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("https")) {
            return Some(Action::Unsupported("HTTPS probes are not supported".into()));
        }
        let host = get.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let path = get.path.clone().unwrap_or_default();
        let path = if path.starts_with('/') { path } else { format!("/{path}") };
        let headers = get.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone()));
        return Some(Action::Http {
            url: format!("http://{host}:{port}{path}"),
            headers: headers.collect(),
        });
    }
    if let Some(tcp) = handler.tcp_socket {
        let Some(port) = port_number(&tcp.port, container) else {
            return Some(Action::Unsupported(format!("no port {:?} in the container", tcp.port)));
        };
        let host = tcp.host.clone().unwrap_or_else(|| pod_ip.to_string());
        return Some(Action::Tcp { address: format!("{host}:{port}") });
    }
    None
}

fn port_number(port: &IntOrString, container: &Container) -> Option<i32> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => match name.parse() {
            Ok(n) => Some(n),
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        },
    }
}

/// Run an action once within `timeout`: Ok on success, else why it failed.
pub async fn run_action(
    action: &Action,
    timeout: Duration,
    log: Option<&std::path::Path>,
) -> Result<(), String> {
    match action {
        Action::Http { url, headers } => {
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .no_proxy()
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?;
            let mut request = client.get(url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send().await.map_err(|e| format!("Get {url:?}: {e}"))?;
            let code = response.status().as_u16();
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
        Action::Tcp { address } => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(format!("dial tcp {address}: {error}")),
                Err(_) => Err(format!("dial tcp {address}: i/o timeout")),
            }
        }
        Action::Exec(launch) => match launch.run(timeout, log).await? {
            0 => Ok(()),
            code => Err(format!("command {:?} exited with {code}", launch.program)),
        },
        Action::Sleep(duration) => {
            tokio::time::sleep(*duration).await;
            Ok(())
        }
        Action::Unsupported(reason) => Err(reason.clone()),
    }
}

/// One probe with its timing.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// The probe's own `terminationGracePeriodSeconds`: the grace of a kill it causes
    /// (liveness and startup), instead of the pod's.
    pub termination_grace: Option<Duration>,
}

impl ProbeSpec {
    /// The probe with Kubernetes' defaults (period 10 s, timeout 1 s, thresholds 1 and 3).
    pub fn new(probe: &Probe, action: Action) -> Self {
        let seconds = |value: Option<i32>, default: i32| {
            Duration::from_secs(value.unwrap_or(default).max(0) as u64)
        };
        Self {
            action,
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
            termination_grace: probe
                .termination_grace_period_seconds
                .map(|s| Duration::from_secs(s.max(0) as u64)),
        }
    }

    /// Resolve one of the container's probes.
    pub fn of(
        probe: Option<&Probe>,
        container: &Container,
        pod_ip: &str,
        exec: &dyn Fn(&[String]) -> Launch,
    ) -> Option<Self> {
        let probe = probe?;
        let handler = Handler {
            exec: probe.exec.as_ref(),
            http_get: probe.http_get.as_ref(),
            tcp_socket: probe.tcp_socket.as_ref(),
        };
        let action = action(handler, container, pod_ip, exec).unwrap_or_else(|| {
            Action::Unsupported("probe without a supported handler (gRPC?)".into())
        });
        Some(Self::new(probe, action))
    }
}

/// A container's three probes.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    pub startup: Option<ProbeSpec>,
    pub readiness: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
}

/// What the prober tells the pod worker.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeEvent {
    /// The startup probe passed (or there is none): `started` is true.
    Started,
    /// The readiness result changed.
    Ready(bool),
    /// Liveness or startup failed for good: the container is to be killed and restarted.
    Unhealthy {
        /// The probe and its last failure, for the log.
        reason: String,
        /// The failed probe's `terminationGracePeriodSeconds`, if it has one.
        termination_grace: Option<Duration>,
    },
}

/// Probe one container instance until aborted. `started_at` is the container's start;
/// `started`/`ready` are what an adopted container had, so it does not blink unready.
pub async fn run(
    probes: Probes,
    started_at: Instant,
    started: bool,
    ready: bool,
    events: mpsc::UnboundedSender<ProbeEvent>,
) {
    if !started {
        if let Some(startup) = &probes.startup
            && let Err(reason) = until_threshold(startup, started_at, Ends::AtSuccess).await
        {
            let _ = events.send(ProbeEvent::Unhealthy {
                reason: format!("Startup probe failed: {reason}"),
                termination_grace: startup.termination_grace,
            });
            return;
        }
        let _ = events.send(ProbeEvent::Started);
    }
    let readiness = async {
        let Some(spec) = &probes.readiness else {
            if !ready {
                let _ = events.send(ProbeEvent::Ready(true));
            }
            return;
        };
        let mut state = ready;
        let mut successes = 0u32;
        let mut failures = 0u32;
        wait_initial_delay(spec, started_at).await;
        loop {
            let tick = Instant::now();
            match run_action(&spec.action, spec.timeout, None).await {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    if !state && successes >= spec.success_threshold {
                        state = true;
                        let _ = events.send(ProbeEvent::Ready(true));
                    }
                }
                Err(reason) => {
                    failures += 1;
                    successes = 0;
                    if state && failures >= spec.failure_threshold {
                        tracing::info!(%reason, "readiness probe failed");
                        state = false;
                        let _ = events.send(ProbeEvent::Ready(false));
                    }
                }
            }
            tokio::time::sleep_until((tick + spec.period).into()).await;
        }
    };
    let liveness = async {
        let Some(spec) = &probes.liveness else { return };
        if let Err(reason) = until_threshold(spec, started_at, Ends::AtFailureOnly).await {
            let _ = events.send(ProbeEvent::Unhealthy {
                reason: format!("Liveness probe failed: {reason}"),
                termination_grace: spec.termination_grace,
            });
        }
    };
    tokio::join!(readiness, liveness);
}

async fn wait_initial_delay(spec: &ProbeSpec, started_at: Instant) {
    tokio::time::sleep_until((started_at + spec.initial_delay).into()).await;
}

/// When [`until_threshold`] returns, besides `failureThreshold` consecutive failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    /// A startup probe: also at `successThreshold` consecutive successes (Ok).
    AtSuccess,
    /// A liveness probe: never on success; it probes until the container fails it.
    AtFailureOnly,
}

/// Probe until `failureThreshold` consecutive failures (Err with the last reason) or, when
/// `ends` says so, `successThreshold` consecutive successes (Ok).
async fn until_threshold(spec: &ProbeSpec, started_at: Instant, ends: Ends) -> Result<(), String> {
    wait_initial_delay(spec, started_at).await;
    let mut successes = 0u32;
    let mut failures = 0u32;
    loop {
        let tick = Instant::now();
        match run_action(&spec.action, spec.timeout, None).await {
            Ok(()) => {
                failures = 0;
                successes += 1;
                if ends == Ends::AtSuccess && successes >= spec.success_threshold {
                    return Ok(());
                }
            }
            Err(reason) => {
                successes = 0;
                failures += 1;
                if failures >= spec.failure_threshold {
                    return Err(reason);
                }
            }
        }
        tokio::time::sleep_until((tick + spec.period).into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Container {
        serde_json::from_value(json!({
            "name": "engine",
            "ports": [{"name": "admin", "containerPort": 9090}]
        }))
        .expect("container")
    }

    fn no_exec(_: &[String]) -> Launch {
        Launch::default()
    }

    #[test]
    fn http_probe_resolves_named_ports_against_the_pod_ip() {
        let probe: Probe = serde_json::from_value(json!({
            "httpGet": {"path": "readyz", "port": "admin"}, "periodSeconds": 5
        }))
        .expect("probe");
        let spec = ProbeSpec::of(Some(&probe), &container(), "10.77.3.10", &no_exec).expect("spec");
        match &spec.action {
            Action::Http { url, .. } => assert_eq!(url, "http://10.77.3.10:9090/readyz"),
            other => panic!("http action expected, got {other:?}"),
        }
        assert_eq!(spec.period, Duration::from_secs(5));
        assert_eq!(spec.timeout, Duration::from_secs(1));
        assert_eq!((spec.success_threshold, spec.failure_threshold), (1, 3));
    }

    #[test]
    fn tcp_probe_and_unknown_port_names() {
        let probe: Probe =
            serde_json::from_value(json!({"tcpSocket": {"port": 6379}})).expect("probe");
        let spec = ProbeSpec::of(Some(&probe), &container(), "10.77.3.10", &no_exec).expect("spec");
        assert!(matches!(&spec.action, Action::Tcp { address } if address == "10.77.3.10:6379"));
        let probe: Probe =
            serde_json::from_value(json!({"tcpSocket": {"port": "nope"}})).expect("probe");
        let spec = ProbeSpec::of(Some(&probe), &container(), "10.77.3.10", &no_exec).expect("spec");
        assert!(matches!(spec.action, Action::Unsupported(_)));
    }

    #[tokio::test]
    async fn tcp_action_succeeds_against_a_listener_and_fails_without_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let action = Action::Tcp { address: address.clone() };
        assert_eq!(run_action(&action, Duration::from_secs(1), None).await, Ok(()));
        drop(listener);
        assert!(run_action(&action, Duration::from_secs(1), None).await.is_err());
    }
}
