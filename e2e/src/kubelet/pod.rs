//! One pod's worker: allocate its IP, prepare volumes, start its containers, probe them, restart
//! crashes with backoff, write status, and on deletion run preStop, SIGTERM, wait the grace
//! period, SIGKILL, then remove the pod object.

use super::volumes::{Mount, container_mounts, prepare_volumes, rewrite};
use super::{IpPool, KubeletConfig};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::store::{Store, now_rfc3339};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// An HTTP probe resolved to a URL.
#[derive(Clone, Debug)]
struct Probe {
    url: String,
    period: Duration,
    initial_delay: Duration,
    failure_threshold: u32,
    timeout: Duration,
}

/// One container of the pod.
struct Container {
    name: String,
    image: String,
    /// Runs as a process (its image is the mapcache image); otherwise reported ready as is.
    runs_process: bool,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pre_stop: Option<(PathBuf, Vec<String>)>,
    readiness: Option<Probe>,
    liveness: Option<Probe>,
    child: Option<Child>,
    started_at: Option<(Instant, String)>,
    restart_count: u32,
    ready: bool,
    last_probe: Option<Instant>,
    readiness_failures: u32,
    liveness_failures: u32,
    restart_at: Option<Instant>,
    last_termination: Option<Value>,
    log_path: PathBuf,
}

pub struct PodWorker {
    store: Arc<Store>,
    config: KubeletConfig,
    pool: Arc<IpPool>,
    pods: Option<ResourceInfo>,
    namespace: String,
    name: String,
    uid: String,
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

impl PodWorker {
    pub fn new(store: Arc<Store>, config: KubeletConfig, pool: Arc<IpPool>, pod: &Value) -> Self {
        Self {
            pods: store.resource_by_key("", "pods"),
            store,
            config,
            pool,
            namespace: text(pod, "/metadata/namespace").to_string(),
            name: text(pod, "/metadata/name").to_string(),
            uid: text(pod, "/metadata/uid").to_string(),
        }
    }

    /// The pod as stored now, if it is still this pod (same uid).
    fn current(&self) -> Option<Value> {
        let info = self.pods.as_ref()?;
        self.store
            .get(info, &self.namespace, &self.name)
            .ok()
            .filter(|pod| text(pod, "/metadata/uid") == self.uid)
    }

    pub async fn run(self) {
        let Some(ip) = self.pool.allocate() else {
            tracing::error!(pod = self.name, "no loopback address left for the pod");
            return;
        };
        let pod_dir = self
            .config
            .root
            .join("pods")
            .join(format!("{}_{}_{}", self.namespace, self.name, self.uid));
        let mut containers: Option<Vec<Container>> = None;
        let mut waiting_reason = String::new();
        let started = now_rfc3339();
        let mut transitions: Vec<(String, bool, String)> = Vec::new();
        loop {
            let Some(pod) = self.current() else {
                // Removed behind our back (force delete): stop everything at once.
                for container in containers.iter_mut().flatten() {
                    if let Some(child) = container.child.as_mut() {
                        let _ = child.kill().await;
                    }
                }
                break;
            };
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                self.terminate(&pod, containers.as_mut(), &ip).await;
                break;
            }
            if containers.is_none() {
                match self.prepare(&pod, &ip, &pod_dir) {
                    Ok(prepared) => containers = Some(prepared),
                    Err(reason) => {
                        if reason != waiting_reason {
                            tracing::info!(pod = self.name, %reason, "pod waits");
                            waiting_reason = reason;
                        }
                    }
                }
            }
            if let Some(containers) = containers.as_mut() {
                for container in containers.iter_mut() {
                    self.supervise(container).await;
                }
            }
            self.write_status(
                &pod,
                containers.as_deref(),
                &ip,
                &started,
                &waiting_reason,
                &mut transitions,
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.pool.release(&ip);
    }

    fn prepare(
        &self,
        pod: &Value,
        ip: &str,
        pod_dir: &std::path::Path,
    ) -> Result<Vec<Container>, String> {
        let volumes = prepare_volumes(&self.store, pod, &self.config.root, pod_dir)?;
        let logs = self.config.root.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("create {}: {e}", logs.display()))?;
        let mut containers = Vec::new();
        for spec in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten()
        {
            let name = text(spec, "/name").to_string();
            let image = text(spec, "/image").to_string();
            let mounts = container_mounts(spec, &volumes);
            let env = self.resolve_env(pod, spec, ip)?;
            let env: Vec<(String, String)> =
                env.into_iter().map(|(k, v)| (k, rewrite(&v, &mounts, ip))).collect();
            let runs_process = image.contains("mapcache");
            let command: Vec<String> = strings(spec.get("command"));
            let args: Vec<String> = strings(spec.get("args"));
            let (program, args) = self.program(&command, &args, &mounts, ip);
            let pre_stop = spec
                .pointer("/lifecycle/preStop/exec/command")
                .map(|cmd| self.program(&strings(Some(cmd)), &[], &mounts, ip));
            containers.push(Container {
                log_path: logs.join(format!("{}_{}_{name}.log", self.namespace, self.name)),
                readiness: probe(spec, "readinessProbe", ip, &self.config),
                liveness: probe(spec, "livenessProbe", ip, &self.config),
                name,
                image,
                runs_process,
                program,
                args,
                env,
                pre_stop,
                child: None,
                started_at: None,
                restart_count: 0,
                ready: false,
                last_probe: None,
                readiness_failures: 0,
                liveness_failures: 0,
                restart_at: Some(Instant::now()),
                last_termination: None,
            });
        }
        Ok(containers)
    }

    /// `command` + `args` with the mapcache binary substituted and paths rewritten.
    fn program(
        &self,
        command: &[String],
        args: &[String],
        mounts: &[Mount],
        ip: &str,
    ) -> (PathBuf, Vec<String>) {
        let mut all: Vec<String> =
            command.iter().chain(args.iter()).map(|a| rewrite(a, mounts, ip)).collect();
        let program =
            if command.first().is_some_and(|c| c.ends_with("mapcache")) || command.is_empty() {
                if !command.is_empty() {
                    all.remove(0);
                }
                self.config.mapcache_bin.clone()
            } else {
                PathBuf::from(all.remove(0))
            };
        (program, all)
    }

    fn resolve_env(
        &self,
        pod: &Value,
        spec: &Value,
        ip: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let mut env = Vec::new();
        for var in spec.get("env").and_then(Value::as_array).into_iter().flatten() {
            let name = text(var, "/name").to_string();
            let value = if let Some(value) = var.get("value").and_then(Value::as_str) {
                value.to_string()
            } else if let Some(path) =
                var.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str)
            {
                match path {
                    "status.podIP" => ip.to_string(),
                    "status.hostIP" => "127.0.0.1".to_string(),
                    "spec.nodeName" => "local".to_string(),
                    "metadata.name" => self.name.clone(),
                    "metadata.namespace" => self.namespace.clone(),
                    "metadata.uid" => self.uid.clone(),
                    other => text(pod, &format!("/{}", other.replace('.', "/"))).to_string(),
                }
            } else if let Some(reference) = var
                .pointer("/valueFrom/secretKeyRef")
                .or_else(|| var.pointer("/valueFrom/configMapKeyRef"))
            {
                let plural = if var.pointer("/valueFrom/secretKeyRef").is_some() {
                    "secrets"
                } else {
                    "configmaps"
                };
                let optional = reference.get("optional").and_then(Value::as_bool) == Some(true);
                match key_value(
                    &self.store,
                    plural,
                    &self.namespace,
                    text(reference, "/name"),
                    text(reference, "/key"),
                ) {
                    Ok(value) => value,
                    Err(_) if optional => continue,
                    Err(reason) => return Err(format!("CreateContainerConfigError: {reason}")),
                }
            } else {
                String::new()
            };
            env.push((name, value));
        }
        Ok(env)
    }

    async fn supervise(&self, container: &mut Container) {
        if !container.runs_process {
            if container.started_at.is_none() {
                container.started_at = Some((Instant::now(), now_rfc3339()));
                container.ready = true;
            }
            return;
        }
        if let Some(child) = container.child.as_mut()
            && let Ok(Some(exit)) = child.try_wait()
        {
            container.child = None;
            container.ready = false;
            container.restart_count += 1;
            let backoff = Duration::from_secs(1 << container.restart_count.min(5))
                .min(self.config.max_backoff);
            container.restart_at = Some(Instant::now() + backoff);
            container.last_termination = Some(json!({"terminated": {
                "exitCode": exit.code().unwrap_or(-1), "reason": "Error",
                "startedAt": container.started_at.as_ref().map(|s| s.1.clone()), "finishedAt": now_rfc3339()
            }}));
            tracing::warn!(pod = self.name, container = container.name, %exit, log = %container.log_path.display(), "container exited; restarting after backoff");
        }
        if container.child.is_none() && container.restart_at.is_some_and(|at| Instant::now() >= at)
        {
            container.restart_at = None;
            match self.start(container) {
                Ok(child) => {
                    container.child = Some(child);
                    container.started_at = Some((Instant::now(), now_rfc3339()));
                    container.readiness_failures = 0;
                    container.liveness_failures = 0;
                    container.last_probe = None;
                }
                Err(error) => {
                    tracing::error!(pod = self.name, container = container.name, %error, program = %container.program.display(), "cannot start the container");
                    container.restart_at = Some(Instant::now() + self.config.max_backoff);
                }
            }
        }
        if container.child.is_none() {
            return;
        }
        let period = container
            .readiness
            .as_ref()
            .or(container.liveness.as_ref())
            .map_or(Duration::from_secs(1), |p| p.period);
        if container.last_probe.is_some_and(|at| at.elapsed() < period) {
            return;
        }
        container.last_probe = Some(Instant::now());
        let since_start = container.started_at.as_ref().map_or(Duration::ZERO, |s| s.0.elapsed());
        match &container.readiness {
            Some(readiness) if since_start >= readiness.initial_delay => {
                if http_ok(readiness).await {
                    container.readiness_failures = 0;
                    container.ready = true;
                } else {
                    container.readiness_failures += 1;
                    if container.readiness_failures >= readiness.failure_threshold
                        || !container.ready
                    {
                        container.ready = false;
                    }
                }
            }
            Some(_) => {}
            None => container.ready = true,
        }
        if let Some(liveness) = &container.liveness
            && since_start >= liveness.initial_delay
        {
            if http_ok(liveness).await {
                container.liveness_failures = 0;
            } else {
                container.liveness_failures += 1;
                if container.liveness_failures >= liveness.failure_threshold {
                    tracing::warn!(
                        pod = self.name,
                        container = container.name,
                        "liveness probe failed; killing the container"
                    );
                    if let Some(child) = container.child.as_mut() {
                        let _ = child.kill().await;
                    }
                }
            }
        }
    }

    fn start(&self, container: &Container) -> std::io::Result<Child> {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&container.log_path)?;
        let mut command = Command::new(&container.program);
        command
            .args(&container.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOSTNAME", &self.name)
            .envs(container.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if let Some(level) = std::env::var_os("RUST_LOG") {
            command.env("RUST_LOG", level);
        }
        tracing::info!(pod = self.name, container = container.name, program = %container.program.display(), args = ?container.args, "starting container");
        command.spawn()
    }

    /// preStop hooks, SIGTERM, the grace period, SIGKILL; then the pod object goes.
    async fn terminate(&self, pod: &Value, containers: Option<&mut Vec<Container>>, ip: &str) {
        let grace = pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30);
        let deadline = Instant::now() + Duration::from_secs(grace);
        if let Some(containers) = containers {
            for container in containers.iter_mut().filter(|c| c.child.is_some()) {
                if let Some((program, args)) = &container.pre_stop {
                    let hook = Command::new(program)
                        .args(args)
                        .env_clear()
                        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                        .envs(container.env.iter().cloned())
                        .env("POD_IP", ip)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .kill_on_drop(true)
                        .status();
                    match tokio::time::timeout_at(deadline.into(), hook).await {
                        Ok(Ok(status)) if status.success() => {}
                        Ok(Ok(status)) => {
                            tracing::warn!(pod = self.name, container = container.name, %status, "preStop hook failed")
                        }
                        Ok(Err(error)) => {
                            tracing::warn!(pod = self.name, container = container.name, %error, "preStop hook did not start")
                        }
                        Err(_) => tracing::warn!(
                            pod = self.name,
                            container = container.name,
                            "preStop hook outlived the grace period"
                        ),
                    }
                }
            }
            for container in containers.iter_mut() {
                if let Some(pid) = container.child.as_ref().and_then(Child::id) {
                    // SAFETY: kill(2) with a pid of our own live child (we still hold its
                    // handle, so it has not been reaped) and a valid signal number.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGTERM);
                    }
                }
            }
            for container in containers.iter_mut() {
                if let Some(child) = container.child.as_mut() {
                    if tokio::time::timeout_at(deadline.into(), child.wait()).await.is_err() {
                        tracing::warn!(
                            pod = self.name,
                            container = container.name,
                            "grace period over; SIGKILL"
                        );
                        let _ = child.kill().await;
                    }
                    container.child = None;
                }
            }
        }
        if let Some(info) = &self.pods
            && self.current().is_some()
        {
            let _ = self.store.remove_now(info, &self.namespace, &self.name);
        }
    }

    fn write_status(
        &self,
        pod: &Value,
        containers: Option<&[Container]>,
        ip: &str,
        started: &str,
        waiting: &str,
        transitions: &mut Vec<(String, bool, String)>,
    ) {
        let Some(info) = &self.pods else { return };
        let containers = containers.unwrap_or_default();
        let running = !containers.is_empty()
            && containers.iter().all(|c| !c.runs_process || c.child.is_some());
        let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                let state = match (&c.child, &c.started_at) {
                    (Some(child), Some((_, at))) => json!({"running": {"startedAt": at}, "pid": child.id()}),
                    _ if !c.runs_process => json!({"running": {"startedAt": c.started_at.as_ref().map(|s| s.1.clone())}}),
                    _ => json!({"waiting": {"reason": if c.restart_count > 0 { "CrashLoopBackOff" } else { "ContainerCreating" }}}),
                };
                let container_id = state.get("pid").and_then(Value::as_u64).map(|pid| format!("process://{pid}"));
                let mut state = state;
                if let Some(map) = state.as_object_mut() {
                    map.remove("pid");
                }
                let mut status = json!({
                    "name": c.name, "image": c.image, "imageID": "", "ready": c.ready,
                    "started": c.child.is_some() || !c.runs_process, "restartCount": c.restart_count, "state": state,
                });
                if let Some(id) = container_id {
                    status["containerID"] = json!(id);
                }
                if let Some(last) = &c.last_termination {
                    status["lastState"] = last.clone();
                }
                status
            })
            .collect();
        let mut condition = |kind: &str, value: bool| -> Value {
            let entry = transitions.iter().position(|(k, _, _)| k == kind);
            let since = match entry {
                Some(i) if transitions[i].1 == value => transitions[i].2.clone(),
                Some(i) => {
                    transitions[i] = (kind.to_string(), value, now_rfc3339());
                    transitions[i].2.clone()
                }
                None => {
                    transitions.push((kind.to_string(), value, now_rfc3339()));
                    transitions[transitions.len() - 1].2.clone()
                }
            };
            json!({"type": kind, "status": if value { "True" } else { "False" }, "lastTransitionTime": since})
        };
        let conditions = vec![
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", all_ready),
            condition("Ready", all_ready),
        ];
        let mut status = json!({
            "phase": if running { "Running" } else { "Pending" },
            "hostIP": "127.0.0.1",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": started,
            "conditions": conditions,
            "containerStatuses": statuses,
        });
        if !waiting.is_empty() && containers.is_empty() {
            status["message"] = json!(waiting);
        }
        if pod.get("status") == Some(&status) {
            return;
        }
        let result =
            self.store.update(info, &self.namespace, &self.name, true, "kubelet", |current| {
                let mut next = current.clone();
                next["status"] = status;
                Ok(next)
            });
        if let Err(error) = result {
            tracing::debug!(pod = self.name, %error, "pod status write failed");
        }
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn key_value(
    store: &Store,
    plural: &str,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, String> {
    let info =
        store.resource_by_key("", plural).ok_or_else(|| format!("{plural} are not served"))?;
    let object = store.get(&info, namespace, name).map_err(|e| e.message)?;
    let raw = object
        .pointer(&format!("/data/{key}"))
        .ok_or_else(|| format!("couldn't find key {key} in {plural} {namespace}/{name}"))?;
    if plural == "secrets" {
        let bytes = serde_json::from_value::<k8s_openapi::ByteString>(raw.clone())
            .map_err(|e| format!("{plural} {name} key {key}: {e}"))?;
        String::from_utf8(bytes.0)
            .map_err(|e| format!("{plural} {name} key {key} is not UTF-8: {e}"))
    } else {
        Ok(raw.as_str().unwrap_or_default().to_string())
    }
}

fn probe(container: &Value, which: &str, ip: &str, config: &KubeletConfig) -> Option<Probe> {
    let probe = container.get(which)?;
    let get = probe.get("httpGet")?;
    let port = match get.get("port")? {
        Value::Number(n) => n.as_u64()?,
        Value::String(name) => container
            .get("ports")
            .and_then(Value::as_array)?
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))?
            .get("containerPort")?
            .as_u64()?,
        _ => return None,
    };
    let seconds =
        |key: &str, default: u64| probe.get(key).and_then(Value::as_u64).unwrap_or(default);
    let path = get.get("path").and_then(Value::as_str).unwrap_or("/");
    Some(Probe {
        url: format!("http://{ip}:{port}{path}"),
        period: Duration::from_secs(seconds("periodSeconds", 10)).min(config.probe_period_cap),
        initial_delay: Duration::from_secs(seconds("initialDelaySeconds", 0)),
        failure_threshold: seconds("failureThreshold", 3).max(1) as u32,
        timeout: Duration::from_secs(seconds("timeoutSeconds", 1)),
    })
}

async fn http_ok(probe: &Probe) -> bool {
    let Ok(client) = reqwest::Client::builder().timeout(probe.timeout).build() else {
        return false;
    };
    match client.get(&probe.url).send().await {
        Ok(response) => response.status().as_u16() >= 200 && response.status().as_u16() < 400,
        Err(_) => false,
    }
}
