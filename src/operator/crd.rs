//! The `MapCache` custom resource (group `mapcache.io`, version `v1alpha1`).
//!
//! Field docs become the CRD schema's descriptions; `mapcache crd` prints the CRD and
//! `crds/mapcache.yaml` is its committed output.

use k8s_openapi::api::core::v1::{Affinity, PodTemplateSpec, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A cache: `replicas` pods, each running the mapcache engine (alone, or as the `engine` sidecar
/// of the app containers in `podTemplate`).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "mapcache.io",
    version = "v1alpha1",
    kind = "MapCache",
    namespaced,
    shortname = "mc",
    status = "MapCacheStatus",
    // `kubectl scale mc/<name> --replicas=N` and HorizontalPodAutoscalers.
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Keys","type":"integer","jsonPath":".status.keys"}"#,
    printcolumn = r#"{"name":"Tombstones","type":"integer","jsonPath":".status.tombstones"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.engine.port != self.engine.adminPort").message("engine.port and engine.adminPort must differ"))]
#[serde(rename_all = "camelCase")]
pub struct MapCacheSpec {
    /// Number of cache pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1024))]
    pub replicas: i32,
    /// Image that carries the `mapcache` binary.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Pull policy of the engine container: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in ['Always', 'IfNotPresent', 'Never']").message("imagePullPolicy must be Always, IfNotPresent or Never"))]
    pub image_pull_policy: Option<String>,
    /// Resources of the engine container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Engine settings.
    #[serde(default)]
    pub engine: EngineSpec,
    /// Snapshots on a PersistentVolumeClaim per pod.
    #[serde(default)]
    pub persistence: PersistenceSpec,
    /// App containers; the engine is added to them as the sidecar container `engine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateSpec>,
    /// Affinity of the cache pods (overrides podTemplate's), e.g. to spread them over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of the cache pods (override podTemplate's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Node selector of the cache pods (overrides podTemplate's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tombstone-driven compaction and rebuild.
    #[serde(default)]
    pub maintenance: MaintenanceSpec,
    /// Hot updates: drain and the safe-deletion checklist.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// PodDisruptionBudget.
    #[serde(default)]
    pub pdb: PdbSpec,
    /// Client authentication (Redis AUTH) from a Secret key `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// NetworkPolicy that keeps the admin port to the operator and the cache's own pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
}

/// The NetworkPolicy `<name>`: the RESP port stays open to every client; the admin port only
/// admits the operator's pods (label `app.kubernetes.io/name: mapcache-operator`, any namespace)
/// and the cache's own pods.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy (default true); false removes it.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_replicas() -> i32 {
    1
}

/// Engine settings passed to `mapcache serve`.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EngineSpec {
    /// Shards per node (a power of two, 1 to 1024).
    #[serde(default = "default_shards")]
    #[x_kube(validation = Rule::new("self in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]").message("shards must be a power of two between 1 and 1024"))]
    pub shards: u32,
    /// Memory limit for data, as a whole-byte quantity (`512Mi`, `2G`); unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub max_memory: Option<String>,
    /// What happens at maxMemory.
    #[serde(default)]
    pub eviction_policy: EvictionPolicy,
    /// RESP port.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Admin HTTP port.
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: i32,
}

impl Default for EngineSpec {
    fn default() -> Self {
        Self {
            shards: default_shards(),
            max_memory: None,
            eviction_policy: EvictionPolicy::default(),
            port: default_port(),
            admin_port: default_admin_port(),
        }
    }
}

fn default_shards() -> u32 {
    16
}
fn default_port() -> i32 {
    6379
}
fn default_admin_port() -> i32 {
    9090
}

/// Redis's maxmemory-policy names.
///
/// A name the schema does not know (a value an older CRD let through) deserializes as
/// [`EvictionPolicy::Unknown`] so the cache still loads and `validate` can report it, instead of
/// the whole object failing to decode in the watcher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EvictionPolicy {
    #[default]
    Noeviction,
    AllkeysRandom,
    AllkeysLru,
    VolatileTtl,
    /// Not a policy the engine knows; rejected by `validate`.
    Unknown(String),
}

impl EvictionPolicy {
    /// The known policies, as `mapcache serve --eviction-policy` spells them.
    pub const NAMES: [&'static str; 4] =
        ["noeviction", "allkeys-random", "allkeys-lru", "volatile-ttl"];

    /// The name as written in the spec and passed to `--eviction-policy`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Noeviction => "noeviction",
            Self::AllkeysRandom => "allkeys-random",
            Self::AllkeysLru => "allkeys-lru",
            Self::VolatileTtl => "volatile-ttl",
            Self::Unknown(name) => name,
        }
    }

    fn from_name(name: &str) -> Self {
        match name {
            "noeviction" => Self::Noeviction,
            "allkeys-random" => Self::AllkeysRandom,
            "allkeys-lru" => Self::AllkeysLru,
            "volatile-ttl" => Self::VolatileTtl,
            other => Self::Unknown(other.to_string()),
        }
    }
}

impl Serialize for EvictionPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EvictionPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Self::from_name(&name))
    }
}

impl JsonSchema for EvictionPolicy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EvictionPolicy".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "What happens at maxMemory (Redis's maxmemory-policy names).",
            "type": "string",
            "enum": Self::NAMES,
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// A PVC per pod for snapshots.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceSpec {
    /// Keep snapshots on a PersistentVolumeClaim per pod (default true); false uses an emptyDir,
    /// so a restarted pod starts empty.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// PVC size, a whole-byte quantity (`1Gi`).
    #[serde(default = "default_volume_size")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub size: String,
    /// StorageClass of the PVCs; unset uses the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for PersistenceSpec {
    fn default() -> Self {
        Self { enabled: true, size: default_volume_size(), storage_class_name: None }
    }
}

fn default_true() -> bool {
    true
}
fn default_volume_size() -> String {
    "1Gi".into()
}

/// Thresholds of the tombstone-driven maintenance.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[x_kube(validation = Rule::new("self.rebuildAtTombstoneRatio >= self.compactAtTombstoneRatio").message("rebuildAtTombstoneRatio must be >= compactAtTombstoneRatio"))]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    /// Compact a pod when tombstones / (keys + tombstones) reaches this.
    #[serde(default = "default_compact_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub compact_at_tombstone_ratio: f64,
    /// Rebuild (shrink) a pod when the tombstone ratio reaches this.
    #[serde(default = "default_rebuild_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub rebuild_at_tombstone_ratio: f64,
    /// Rebuild when live keys fill at most this fraction of the slots.
    #[serde(default = "default_fill_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub rebuild_at_fill_ratio: f64,
    /// Never maintain a pod with fewer keys than this.
    #[serde(default = "default_min_keys")]
    pub min_keys: u64,
    /// Minimum time between two actions on one pod (duration, `10m`).
    #[serde(default = "default_cooldown")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub cooldown: String,
    /// How often pods' /v1/stats are read (duration, `30s`).
    #[serde(default = "default_poll_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub poll_interval: String,
    /// At most this many pods of the cache in maintenance at once.
    #[serde(default = "default_max_concurrent")]
    #[schemars(range(min = 1))]
    pub max_concurrent: u32,
}

impl Default for MaintenanceSpec {
    fn default() -> Self {
        Self {
            compact_at_tombstone_ratio: default_compact_ratio(),
            rebuild_at_tombstone_ratio: default_rebuild_ratio(),
            rebuild_at_fill_ratio: default_fill_ratio(),
            min_keys: default_min_keys(),
            cooldown: default_cooldown(),
            poll_interval: default_poll_interval(),
            max_concurrent: default_max_concurrent(),
        }
    }
}

fn default_compact_ratio() -> f64 {
    0.25
}
fn default_rebuild_ratio() -> f64 {
    0.5
}
fn default_fill_ratio() -> f64 {
    0.125
}
fn default_min_keys() -> u64 {
    1000
}
fn default_cooldown() -> String {
    "10m".into()
}
fn default_poll_interval() -> String {
    "30s".into()
}
fn default_max_concurrent() -> u32 {
    1
}

/// Hot-update settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// How long the checklist may keep failing before `onTimeout` applies (duration).
    #[serde(default = "default_checklist_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub checklist_timeout: String,
    /// No client activity for this long counts as quiet (duration).
    #[serde(default = "default_quiet_period")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub quiet_period: String,
    /// Length of the lock profile taken for `no-lock-waiters` (1 to 60 seconds).
    #[serde(default = "default_lock_profile_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub lock_profile_seconds: u32,
    /// Skip `snapshot-verified` (keys may be lost).
    #[serde(default)]
    pub allow_data_loss: bool,
    /// What to do when the checklist times out.
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            checklist_timeout: default_checklist_timeout(),
            quiet_period: default_quiet_period(),
            lock_profile_seconds: default_lock_profile_seconds(),
            allow_data_loss: false,
            on_timeout: OnTimeout::default(),
        }
    }
}

fn default_checklist_timeout() -> String {
    "5m".into()
}
fn default_quiet_period() -> String {
    "5s".into()
}
fn default_lock_profile_seconds() -> u32 {
    2
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum OnTimeout {
    /// Stop, delete nothing, report the failing item.
    #[default]
    Block,
    /// Delete the pod anyway, and say so loudly.
    Proceed,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// Create the PodDisruptionBudget `<name>` (default true); false removes it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods that may be unavailable at once.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

impl Default for PdbSpec {
    fn default() -> Self {
        Self { enabled: true, max_unavailable: default_max_unavailable() }
    }
}

fn default_max_unavailable() -> i32 {
    1
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret in the cache's namespace with key `password`.
    #[schemars(length(min = 1))]
    pub secret_name: String,
}

/// Observed state, written by the operator only.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MapCacheStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending | Running | Updating | Maintenance | Degraded | Invalid
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Pods of the cache that exist (the scale subresource's replica count).
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are Ready and not terminating.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The label selector of the cache's pods, as a string (the scale subresource's selector,
    /// which HorizontalPodAutoscalers use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Live keys summed over pods.
    #[serde(default)]
    pub keys: u64,
    /// Tombstones summed over pods.
    #[serde(default)]
    pub tombstones: u64,
    /// Ready, Progressing, Maintenance, RollingUpdate, Degraded, InvalidSpec.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The pod-template revision every ready pod runs (unset while they differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// The revision of the current pod template (`mapcache.io/revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Every pod of the cache, by ordinal.
    #[serde(default)]
    pub pods: Vec<PodStatus>,
    /// The hot update in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// One pod as the operator last saw it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Pod name (`<cache>-<ordinal>`).
    pub name: String,
    /// Ready and not terminating.
    #[serde(default)]
    pub ready: bool,
    /// The pod-template revision the pod was created from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Live keys (from the node's /v1/stats).
    #[serde(default)]
    pub keys: u64,
    /// Deleted slots not yet reclaimed (emptyOne).
    #[serde(default)]
    pub tombstones: u64,
    /// tombstones / (keys + tombstones).
    #[serde(default)]
    pub tombstone_ratio: f64,
    /// Memory the node accounts for its data.
    #[serde(default)]
    pub memory_bytes: u64,
    /// The last compaction the operator triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_compaction: Option<MaintenanceRecord>,
    /// The last rebuild the operator triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rebuild: Option<MaintenanceRecord>,
    /// The safe-deletion checklist while the pod is being replaced.
    #[serde(default)]
    pub checklist: Vec<ChecklistItem>,
}

/// One compaction or rebuild with its figures before and after.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceRecord {
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time; unset while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why it ran (the threshold crossed, with the figure).
    pub reason: String,
    /// Live keys when it started.
    pub keys_before: u64,
    /// Tombstones when it started.
    pub tombstones_before: u64,
    /// Memory when it started.
    pub memory_bytes_before: u64,
    /// Tombstones once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstones_after: Option<u64>,
    /// Memory once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes_after: Option<u64>,
}

/// One item of the safe-deletion checklist, with its evidence.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChecklistItem {
    /// deregistered | no-inflight | no-lock-waiters | cross-checked | maintenance-idle |
    /// snapshot-verified | disruption-allowed
    pub name: String,
    pub passed: bool,
    /// What was observed, in words and figures.
    pub evidence: String,
    /// RFC 3339 time of the check.
    pub checked_at: String,
}

/// Where a hot update stands; lives in status so a restarted operator resumes it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The pod being replaced.
    pub pod: String,
    /// Draining | Checking | Evicting | WaitingReady | Blocked
    pub step: String,
    /// RFC 3339 time the current pod's step sequence started.
    pub started_at: String,
    /// The failing checklist item while blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_on: Option<String>,
    /// Keys in the verified snapshot of the drained pod (the restored pod must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_keys: Option<u64>,
    /// UID of the pod that was evicted, so it is never evicted twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_uid: Option<String>,
}

/// The CRD as YAML, as `mapcache crd` prints it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(MapCache::crd()).expect("CRD serializes to JSON");
    drop_unknown_formats(&mut crd);
    serde_yaml::to_string(&crd).expect("CRD serializes to YAML")
}

/// The `format`s Kubernetes' structural schemas know (k8s.io/kube-openapi's format registry).
/// schemars writes `uint32`/`uint64` for unsigned fields; the API server accepts the CRD but warns
/// "unrecognized format" on every apply, and validates nothing by them. Their range is already
/// in the schema (`minimum: 0`), so those formats are dropped.
const KUBERNETES_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

fn drop_unknown_formats(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            let unknown =
                map.get("format").and_then(serde_json::Value::as_str).is_some_and(|format| {
                    !KUBERNETES_FORMATS.contains(&format) && map.contains_key("type")
                });
            if unknown {
                map.remove("format");
            }
            map.values_mut().for_each(drop_unknown_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_unknown_formats),
        _ => {}
    }
}
