//! The ConfigMap `<name>-config`: the effective engine settings after defaulting and parsing, so
//! `kubectl get cm <name>-config -o yaml` shows what the pods run with (maxMemory in bytes, the
//! exact `mapcache serve` flags, the parsed maintenance and rollout settings).

use super::child_meta;
use super::statefulset::engine_args;
use crate::operator::crd::MapCache;
use crate::operator::validate::Validated;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Name of the ConfigMap.
pub fn name(mc: &MapCache) -> String {
    format!("{}-config", mc.name_any())
}

pub fn build(mc: &MapCache, validated: &Validated) -> ConfigMap {
    let engine = &mc.spec.engine;
    let data = BTreeMap::from([
        ("serve-args".to_string(), engine_args(mc, validated).join(" ")),
        ("shards".to_string(), engine.shards.to_string()),
        ("port".to_string(), engine.port.to_string()),
        ("admin-port".to_string(), engine.admin_port.to_string()),
        (
            "maxmemory-bytes".to_string(),
            validated.max_memory_bytes.map_or_else(|| "unlimited".to_string(), |b| b.to_string()),
        ),
        ("eviction-policy".to_string(), engine.eviction_policy.as_str().to_string()),
        ("maintenance-cooldown-seconds".to_string(), validated.cooldown.as_secs().to_string()),
        (
            "maintenance-poll-interval-seconds".to_string(),
            validated.poll_interval.as_secs().to_string(),
        ),
        (
            "rollout-checklist-timeout-seconds".to_string(),
            validated.checklist_timeout.as_secs().to_string(),
        ),
        ("rollout-quiet-period-seconds".to_string(), validated.quiet_period.as_secs().to_string()),
    ]);
    ConfigMap { metadata: child_meta(mc, name(mc)), data: Some(data), ..ConfigMap::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::validate::validate;

    #[test]
    fn configmap_holds_the_effective_settings() {
        let mut mc = MapCache::test();
        mc.spec.engine.max_memory = Some("1Ki".into());
        let cm = build(&mc, &validate(&mc).expect("valid"));
        assert_eq!(cm.metadata.name.as_deref(), Some("cache-config"));
        let data = cm.data.expect("data");
        assert_eq!(data.len(), 10);
        assert_eq!(data["maxmemory-bytes"], "1024");
        assert_eq!(data["eviction-policy"], "noeviction");
        assert_eq!(data["shards"], "16");
        assert_eq!(data["maintenance-cooldown-seconds"], "600");
        assert_eq!(data["rollout-quiet-period-seconds"], "5");
        assert_eq!(
            data["serve-args"],
            "serve --bind=0.0.0.0 --port=6379 --admin-bind=0.0.0.0 --admin-port=9090 --shards=16 \
             --data-dir=/data --admin-token-file=/etc/mapcache/admin/token --maxmemory=1024 \
             --eviction-policy=noeviction --protected-mode=no"
        );
    }
}
