//! `validate`: the first, pure step of reconcile.
//!
//! The CRD schema already rejects most bad specs, but a cache created under an older CRD (or
//! with validation off) can still carry anything, so every value the builders rely on is checked
//! again here. A failure becomes `InvalidSpec=True` with the message of [`Error`]; nothing is
//! applied and nothing is deleted.

use crate::operator::crd::MapCache;
use std::time::Duration;

/// Why a spec cannot be reconciled. Each message names the field and the offending value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("spec.image must not be empty")]
    EmptyImage,
    #[error("spec.imagePullPolicy {0:?} is not Always, IfNotPresent or Never")]
    ImagePullPolicy(String),
    #[error("spec.replicas must be between 0 and 1024, got {0}")]
    Replicas(i32),
    #[error("spec.engine.shards must be a power of two between 1 and 1024, got {0}")]
    Shards(u32),
    #[error("spec.engine.{field} must be a port between 1 and 65535, got {value}")]
    Port { field: &'static str, value: i32 },
    #[error("spec.engine.port and spec.engine.adminPort must differ, both are {0}")]
    SamePorts(i32),
    #[error(
        "spec.engine.evictionPolicy {0:?} is unknown (noeviction, allkeys-random, allkeys-lru, volatile-ttl)"
    )]
    EvictionPolicy(String),
    #[error("spec.engine.maxMemory {value:?} is not a quantity: {reason}")]
    MaxMemory { value: String, reason: String },
    #[error("spec.persistence.size {value:?} is not a quantity: {reason}")]
    PersistenceSize { value: String, reason: String },
    #[error("spec.{field} {value:?} is not a duration like 30s, 10m or 1h30m")]
    Duration { field: &'static str, value: String },
    #[error("spec.maintenance.{field} must be within [0, 1], got {value}")]
    Ratio { field: &'static str, value: f64 },
    #[error(
        "spec.maintenance.rebuildAtTombstoneRatio ({rebuild}) must be >= compactAtTombstoneRatio ({compact})"
    )]
    RebuildBelowCompact { rebuild: f64, compact: f64 },
    #[error("spec.maintenance.maxConcurrent must be at least 1, got 0")]
    MaxConcurrent,
    #[error("spec.pdb.maxUnavailable must be at least 1, got {0}")]
    MaxUnavailable(i32),
    #[error("spec.auth.secretName must not be empty")]
    EmptyAuthSecret,
    #[error(
        "spec.podTemplate already has a container named \"engine\"; that name is the operator's"
    )]
    EngineContainerTaken,
    #[error("spec.rollout.lockProfileSeconds must be between 1 and 60, got {0}")]
    LockProfileSeconds(u32),
}

/// Settings derived from a valid spec, in the units the builders and the pipeline need.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// `spec.engine.maxMemory` in bytes.
    pub max_memory_bytes: Option<u64>,
    /// `spec.maintenance.cooldown`.
    pub cooldown: Duration,
    /// `spec.maintenance.pollInterval`.
    pub poll_interval: Duration,
    /// `spec.rollout.checklistTimeout`.
    pub checklist_timeout: Duration,
    /// `spec.rollout.quietPeriod`.
    pub quiet_period: Duration,
}

/// Checks every field the operator relies on; returns the first problem found.
pub fn validate(mc: &MapCache) -> Result<Validated, Error> {
    let spec = &mc.spec;
    if spec.image.trim().is_empty() {
        return Err(Error::EmptyImage);
    }
    if let Some(policy) = spec.image_pull_policy.as_deref()
        && !["Always", "IfNotPresent", "Never"].contains(&policy)
    {
        return Err(Error::ImagePullPolicy(policy.into()));
    }
    if !(0..=1024).contains(&spec.replicas) {
        return Err(Error::Replicas(spec.replicas));
    }
    let engine = &spec.engine;
    if !engine.shards.is_power_of_two() || engine.shards > 1024 {
        return Err(Error::Shards(engine.shards));
    }
    for (field, value) in [("port", engine.port), ("adminPort", engine.admin_port)] {
        if !(1..=65535).contains(&value) {
            return Err(Error::Port { field, value });
        }
    }
    if engine.port == engine.admin_port {
        return Err(Error::SamePorts(engine.port));
    }
    if let crate::operator::crd::EvictionPolicy::Unknown(name) = &engine.eviction_policy {
        return Err(Error::EvictionPolicy(name.clone()));
    }
    let max_memory_bytes = engine
        .max_memory
        .as_deref()
        .map(|value| {
            parse_quantity_bytes(value)
                .map_err(|reason| Error::MaxMemory { value: value.into(), reason })
        })
        .transpose()?;
    if spec.persistence.enabled {
        let size = &spec.persistence.size;
        parse_quantity_bytes(size)
            .map_err(|reason| Error::PersistenceSize { value: size.clone(), reason })?;
    }
    let maintenance = &spec.maintenance;
    for (field, value) in [
        ("compactAtTombstoneRatio", maintenance.compact_at_tombstone_ratio),
        ("rebuildAtTombstoneRatio", maintenance.rebuild_at_tombstone_ratio),
        ("rebuildAtFillRatio", maintenance.rebuild_at_fill_ratio),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(Error::Ratio { field, value });
        }
    }
    if maintenance.rebuild_at_tombstone_ratio < maintenance.compact_at_tombstone_ratio {
        return Err(Error::RebuildBelowCompact {
            rebuild: maintenance.rebuild_at_tombstone_ratio,
            compact: maintenance.compact_at_tombstone_ratio,
        });
    }
    if maintenance.max_concurrent == 0 {
        return Err(Error::MaxConcurrent);
    }
    let duration = |field: &'static str, value: &str| {
        parse_duration(value).ok_or_else(|| Error::Duration { field, value: value.into() })
    };
    let cooldown = duration("maintenance.cooldown", &maintenance.cooldown)?;
    let poll_interval = duration("maintenance.pollInterval", &maintenance.poll_interval)?;
    let checklist_timeout = duration("rollout.checklistTimeout", &spec.rollout.checklist_timeout)?;
    let quiet_period = duration("rollout.quietPeriod", &spec.rollout.quiet_period)?;
    if !(1..=60).contains(&spec.rollout.lock_profile_seconds) {
        return Err(Error::LockProfileSeconds(spec.rollout.lock_profile_seconds));
    }
    if spec.pdb.max_unavailable < 1 {
        return Err(Error::MaxUnavailable(spec.pdb.max_unavailable));
    }
    if spec.auth.as_ref().is_some_and(|auth| auth.secret_name.trim().is_empty()) {
        return Err(Error::EmptyAuthSecret);
    }
    let app_containers = spec.pod_template.as_ref().and_then(|t| t.spec.as_ref());
    if app_containers.is_some_and(|pod| pod.containers.iter().any(|c| c.name == "engine")) {
        return Err(Error::EngineContainerTaken);
    }
    Ok(Validated { max_memory_bytes, cooldown, poll_interval, checklist_timeout, quiet_period })
}

/// Parses a Go-style duration made of `<integer><unit>` parts, units `ms`, `s`, `m`, `h`
/// (`500ms`, `30s`, `10m`, `1h30m`). Returns None for anything else, including an empty string.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, millis) = if rest.starts_with("ms") {
            ("ms", 1)
        } else if rest.starts_with('s') {
            ("s", 1_000)
        } else if rest.starts_with('m') {
            ("m", 60_000)
        } else if rest.starts_with('h') {
            ("h", 3_600_000)
        } else {
            return None;
        };
        rest = &rest[unit.len()..];
        total = total.checked_add(Duration::from_millis(number.checked_mul(millis)?))?;
    }
    Some(total)
}

/// Parses a Kubernetes quantity of bytes: a plain integer, or an integer with a binary (`Ki`,
/// `Mi`, `Gi`, `Ti`) or decimal (`k`, `M`, `G`, `T`) suffix. Fractions are refused: a byte
/// count is whole.
pub fn parse_quantity_bytes(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("expected digits first".into());
    }
    let number: u64 = text[..digits].parse().map_err(|_| "number too large".to_string())?;
    let multiplier: u64 = match &text[digits..] {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        suffix => {
            return Err(format!("unknown suffix {suffix:?} (use Ki, Mi, Gi, Ti, k, M, G, T)"));
        }
    };
    number.checked_mul(multiplier).ok_or_else(|| "number too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{AuthSpec, EvictionPolicy};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    #[test]
    fn default_spec_is_valid_with_parsed_durations() {
        let validated = validate(&MapCache::test()).expect("valid");
        assert_eq!(
            validated,
            Validated {
                max_memory_bytes: None,
                cooldown: Duration::from_secs(600),
                poll_interval: Duration::from_secs(30),
                checklist_timeout: Duration::from_secs(300),
                quiet_period: Duration::from_secs(5),
            }
        );
    }

    #[test]
    fn empty_image_is_rejected() {
        let mc = MapCache::test().with_image("  ");
        assert_eq!(validate(&mc), Err(Error::EmptyImage));
        assert_eq!(Error::EmptyImage.to_string(), "spec.image must not be empty");
    }

    #[test]
    fn unknown_image_pull_policy_is_rejected() {
        let mut mc = MapCache::test();
        mc.spec.image_pull_policy = Some("Sometimes".into());
        assert_eq!(
            validate(&mc).unwrap_err().to_string(),
            "spec.imagePullPolicy \"Sometimes\" is not Always, IfNotPresent or Never"
        );
        mc.spec.image_pull_policy = Some("IfNotPresent".into());
        assert!(validate(&mc).is_ok());
    }

    #[test]
    fn unknown_eviction_policy_is_rejected_with_its_name() {
        let mut mc = MapCache::test();
        mc.spec.engine.eviction_policy = EvictionPolicy::Unknown("allkeys-lfu".into());
        let err = validate(&mc).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.engine.evictionPolicy \"allkeys-lfu\" is unknown (noeviction, allkeys-random, allkeys-lru, volatile-ttl)"
        );
    }

    #[test]
    fn shards_must_be_a_power_of_two() {
        let mut mc = MapCache::test();
        mc.spec.engine.shards = 12;
        assert_eq!(validate(&mc), Err(Error::Shards(12)));
        mc.spec.engine.shards = 0;
        assert_eq!(validate(&mc), Err(Error::Shards(0)));
        mc.spec.engine.shards = 2048;
        assert_eq!(validate(&mc), Err(Error::Shards(2048)));
    }

    #[test]
    fn ports_must_be_in_range_and_differ() {
        let mut mc = MapCache::test();
        mc.spec.engine.admin_port = 70000;
        assert_eq!(validate(&mc), Err(Error::Port { field: "adminPort", value: 70000 }));
        mc.spec.engine.admin_port = 6379;
        assert_eq!(validate(&mc), Err(Error::SamePorts(6379)));
    }

    #[test]
    fn rebuild_ratio_below_compact_ratio_is_rejected() {
        let mut mc = MapCache::test();
        mc.spec.maintenance.compact_at_tombstone_ratio = 0.6;
        mc.spec.maintenance.rebuild_at_tombstone_ratio = 0.5;
        assert_eq!(
            validate(&mc).unwrap_err().to_string(),
            "spec.maintenance.rebuildAtTombstoneRatio (0.5) must be >= compactAtTombstoneRatio (0.6)"
        );
    }

    #[test]
    fn ratio_out_of_range_and_nan_are_rejected() {
        let mut mc = MapCache::test();
        mc.spec.maintenance.rebuild_at_fill_ratio = 1.5;
        assert_eq!(validate(&mc), Err(Error::Ratio { field: "rebuildAtFillRatio", value: 1.5 }));
        mc.spec.maintenance.rebuild_at_fill_ratio = f64::NAN;
        assert!(matches!(validate(&mc), Err(Error::Ratio { field: "rebuildAtFillRatio", .. })));
    }

    #[test]
    fn bad_duration_names_field_and_value() {
        let mut mc = MapCache::test();
        mc.spec.rollout.quiet_period = "5 seconds".into();
        assert_eq!(
            validate(&mc).unwrap_err().to_string(),
            "spec.rollout.quietPeriod \"5 seconds\" is not a duration like 30s, 10m or 1h30m"
        );
    }

    #[test]
    fn max_memory_is_parsed_to_bytes_and_garbage_is_rejected() {
        let mut mc = MapCache::test();
        mc.spec.engine.max_memory = Some("512Mi".into());
        assert_eq!(validate(&mc).expect("valid").max_memory_bytes, Some(512 * 1024 * 1024));
        mc.spec.engine.max_memory = Some("1.5Gi".into());
        assert_eq!(
            validate(&mc).unwrap_err().to_string(),
            "spec.engine.maxMemory \"1.5Gi\" is not a quantity: unknown suffix \".5Gi\" (use Ki, Mi, Gi, Ti, k, M, G, T)"
        );
    }

    #[test]
    fn persistence_size_is_checked_only_when_enabled() {
        let mut mc = MapCache::test();
        mc.spec.persistence.size = "lots".into();
        assert_eq!(
            validate(&mc),
            Err(Error::PersistenceSize {
                value: "lots".into(),
                reason: "expected digits first".into()
            })
        );
        mc.spec.persistence.enabled = false;
        assert!(validate(&mc).is_ok());
    }

    #[test]
    fn replicas_zero_to_limit_and_pdb_and_auth_checks() {
        let mut mc = MapCache::test().with_replicas(-1);
        assert_eq!(validate(&mc), Err(Error::Replicas(-1)));
        mc.spec.replicas = 0;
        assert!(validate(&mc).is_ok());
        mc.spec.pdb.max_unavailable = 0;
        assert_eq!(validate(&mc), Err(Error::MaxUnavailable(0)));
        mc.spec.pdb.max_unavailable = 1;
        mc.spec.auth = Some(AuthSpec { secret_name: String::new() });
        assert_eq!(validate(&mc), Err(Error::EmptyAuthSecret));
        mc.spec.auth = None;
        mc.spec.maintenance.max_concurrent = 0;
        assert_eq!(validate(&mc), Err(Error::MaxConcurrent));
        mc.spec.maintenance.max_concurrent = 1;
        mc.spec.rollout.lock_profile_seconds = 0;
        assert_eq!(validate(&mc), Err(Error::LockProfileSeconds(0)));
    }

    #[test]
    fn app_container_named_engine_is_rejected() {
        let mut mc = MapCache::test();
        mc.spec.pod_template = Some(PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container { name: "engine".into(), ..Container::default() }],
                ..PodSpec::default()
            }),
        });
        assert_eq!(validate(&mc), Err(Error::EngineContainerTaken));
    }

    #[test]
    fn durations_parse_go_style() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("10d"), None);
        assert_eq!(parse_duration("-5s"), None);
    }

    #[test]
    fn quantities_parse_binary_and_decimal_suffixes() {
        assert_eq!(parse_quantity_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_quantity_bytes("2k"), Ok(2000));
        assert_eq!(parse_quantity_bytes("4096"), Ok(4096));
        assert_eq!(parse_quantity_bytes("99999999999Ti"), Err("number too large".into()));
    }
}
