//! The parts of pod status the kubelet computes from its containers, as Kubernetes does: the
//! phase (`getPhase` in pkg/kubelet/kubelet_pods.go), the QoS class (`GetPodQOS`), and
//! conditions whose `lastTransitionTime` moves only when their status changes.

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

/// What `getPhase` needs to know of one container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerPhase {
    /// Not running; `terminated_before` when it has run and ended at least once.
    Waiting {
        terminated_before: bool,
    },
    Running,
    /// Ended for good with this exit code.
    Terminated {
        exit_code: i32,
    },
}

/// The pod phase from its containers' states and its restart policy.
pub fn pod_phase(restart_policy: &str, containers: &[ContainerPhase]) -> &'static str {
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for container in containers {
        match container {
            ContainerPhase::Running => running += 1,
            ContainerPhase::Terminated { exit_code } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            ContainerPhase::Waiting { terminated_before: true } => stopped += 1,
            ContainerPhase::Waiting { terminated_before: false } => waiting += 1,
        }
    }
    if containers.is_empty() || waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// Kubernetes' QoS class: BestEffort without any cpu/memory request or limit, Guaranteed when
/// every container limits cpu and memory and requests equal limits, else Burstable.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    const COMPUTE: [&str; 2] = ["cpu", "memory"];
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let all = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for container in all {
        let resources = container.resources.as_ref();
        for (name, quantity) in resources.and_then(|r| r.requests.as_ref()).into_iter().flatten() {
            if let Some(name) = COMPUTE.iter().find(|c| **c == name.as_str())
                && let Some(value) = milli_units(quantity).filter(|v| *v != 0)
            {
                *requests.entry(name).or_default() += value;
            }
        }
        let mut limited = 0;
        for (name, quantity) in resources.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
            if let Some(name) = COMPUTE.iter().find(|c| **c == name.as_str())
                && let Some(value) = milli_units(quantity).filter(|v| *v != 0)
            {
                limited += 1;
                *limits.entry(name).or_default() += value;
            }
        }
        if limited != COMPUTE.len() {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(name, value)| limits.get(name) == Some(value))
        && requests.len() == limits.len()
    {
        return "Guaranteed";
    }
    "Burstable"
}

/// A quantity in thousandths of its unit ("100m" -> 100, "1Gi" -> 1073741824000).
pub fn milli_units(quantity: &Quantity) -> Option<i128> {
    let text = quantity.0.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (multiplier, divisor): (i128, i128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "k" => (1000 * 1000, 1),
        "M" => (1000 * 1000_i128.pow(2), 1),
        "G" => (1000 * 1000_i128.pow(3), 1),
        "T" => (1000 * 1000_i128.pow(4), 1),
        "P" => (1000 * 1000_i128.pow(5), 1),
        "E" => (1000 * 1000_i128.pow(6), 1),
        "Ki" => (1000 << 10, 1),
        "Mi" => (1000 << 20, 1),
        "Gi" => (1000 << 30, 1),
        "Ti" => (1000 << 40, 1),
        "Pi" => (1000 << 50, 1),
        "Ei" => (1000 << 60, 1),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: u32 = exponent[1..].parse().ok()?;
            (1000 * 10_i128.checked_pow(power)?, 1)
        }
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let scale = 10_i128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    Some(digits.checked_mul(multiplier)? / (scale * divisor))
}

/// Pod conditions with stable transition times.
#[derive(Debug, Default)]
pub struct Conditions {
    /// type -> (status, since).
    since: BTreeMap<String, (bool, Time)>,
}

impl Conditions {
    /// Start from the conditions the pod already has, so a restarted kubelet keeps their times.
    pub fn seeded(pod: &Pod) -> Self {
        let mut since = BTreeMap::new();
        for condition in pod.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
            if let Some(time) = &condition.last_transition_time {
                since.insert(condition.type_.clone(), (condition.status == "True", time.clone()));
            }
        }
        Self { since }
    }

    /// The condition with its transition time (now, if its status just changed).
    pub fn condition(&mut self, kind: &str, status: bool, reason: Option<&str>) -> PodCondition {
        let entry = self.since.entry(kind.to_string()).or_insert_with(|| (status, now()));
        if entry.0 != status {
            *entry = (status, now());
        }
        PodCondition {
            type_: kind.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            last_transition_time: Some(entry.1.clone()),
            reason: reason.map(str::to_string),
            ..PodCondition::default()
        }
    }
}

/// Now, at the API's precision (seconds), so unchanged status serializes unchanged.
pub fn now() -> Time {
    Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(resources: serde_json::Value) -> PodSpec {
        serde_json::from_value(json!({"containers": [
            {"name": "a", "resources": resources},
            {"name": "b", "resources": resources}
        ]}))
        .expect("spec")
    }

    #[test]
    fn qos_class_follows_requests_and_limits() {
        assert_eq!(qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(qos_class(&spec(json!({"requests": {"cpu": "0"}}))), "BestEffort");
        assert_eq!(qos_class(&spec(json!({"requests": {"cpu": "10m"}}))), "Burstable");
        let equal = json!({"requests": {"cpu": "100m", "memory": "64Mi"},
                           "limits": {"cpu": "0.1", "memory": "67108864"}});
        assert_eq!(qos_class(&spec(equal)), "Guaranteed");
        let cpu_only = json!({"requests": {"cpu": "1"}, "limits": {"cpu": "1"}});
        assert_eq!(qos_class(&spec(cpu_only)), "Burstable");
        let more = json!({"requests": {"cpu": "1", "memory": "1Gi"},
                          "limits": {"cpu": "2", "memory": "1Gi"}});
        assert_eq!(qos_class(&spec(more)), "Burstable");
        let storage = json!({"requests": {"ephemeral-storage": "1Gi"}});
        assert_eq!(qos_class(&spec(storage)), "BestEffort", "only cpu and memory count");
    }

    #[test]
    fn quantities_parse_to_milli_units() {
        let q = |s: &str| milli_units(&Quantity(s.into()));
        assert_eq!(q("100m"), Some(100));
        assert_eq!(q("0.1"), Some(100));
        assert_eq!(q("2"), Some(2000));
        assert_eq!(q("1Ki"), Some(1_024_000));
        assert_eq!(q("1.5Gi"), Some(1_610_612_736_000));
        assert_eq!(q("1e3"), Some(1_000_000));
        assert_eq!(q("1k"), Some(1_000_000));
        assert_eq!(q("12x"), None);
    }

    #[test]
    fn phase_follows_get_phase() {
        use ContainerPhase::*;
        let never_started = Waiting { terminated_before: false };
        let crashed = Waiting { terminated_before: true };
        assert_eq!(pod_phase("Always", &[]), "Pending");
        assert_eq!(pod_phase("Always", &[Running, never_started]), "Pending");
        assert_eq!(pod_phase("Always", &[Running, crashed]), "Running");
        assert_eq!(pod_phase("Always", &[crashed]), "Running");
        assert_eq!(pod_phase("Never", &[Terminated { exit_code: 0 }]), "Succeeded");
        assert_eq!(
            pod_phase("Never", &[Terminated { exit_code: 0 }, Terminated { exit_code: 1 }]),
            "Failed"
        );
        assert_eq!(pod_phase("OnFailure", &[Terminated { exit_code: 0 }]), "Succeeded");
        assert_eq!(pod_phase("OnFailure", &[crashed]), "Running");
        assert_eq!(pod_phase("Never", &[Running, Terminated { exit_code: 1 }]), "Running");
    }

    #[test]
    fn transition_time_moves_only_on_a_change() {
        let pod: Pod = serde_json::from_value(json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]}}))
        .expect("pod");
        let mut conditions = Conditions::seeded(&pod);
        let ready = conditions.condition("Ready", true, None);
        assert_eq!(
            ready.last_transition_time.map(|t| t.0.to_string()),
            Some("2026-01-01T00:00:00Z".to_string())
        );
        let unready = conditions.condition("Ready", false, Some("ContainersNotReady"));
        assert_ne!(
            unready.last_transition_time.map(|t| t.0.to_string()),
            Some("2026-01-01T00:00:00Z".to_string())
        );
        assert_eq!(unready.status, "False");
    }
}
