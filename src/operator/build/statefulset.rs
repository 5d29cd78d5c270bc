//! The StatefulSet `<name>`: the cache pods.
//!
//! `updateStrategy: OnDelete`, so the StatefulSet never replaces a pod on its own: the operator's
//! rollout decides when each pod goes (drain + safe-deletion checklist). The pod template is the
//! user's `podTemplate` (if any) with the engine appended as the container `engine`, and carries
//! `mapcache.io/revision: <hash of the template>`, the revision the rollout compares pods against.

use super::{
    ADMIN_TOKEN_DIR, ADMIN_TOKEN_KEY, DATA_DIR, REVISION_LABEL, admin_token_secret_name,
    child_meta, headless_service_name, labels, selector_labels,
};
use crate::operator::crd::MapCache;
use crate::operator::validate::Validated;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodTemplateSpec, Probe, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Name of the engine container (the sidecar next to the app containers).
pub const ENGINE_CONTAINER: &str = "engine";
/// The non-root user the engine runs as (distroless `nonroot`).
pub const ENGINE_UID: i64 = 65532;
/// Long enough for drain + snapshot + verify of a full node before the kubelet kills it.
pub const TERMINATION_GRACE_SECONDS: i64 = 60;
/// Volume (and claim template) with the snapshots.
pub const DATA_VOLUME: &str = "data";
/// Volume with the admin token Secret.
pub const ADMIN_TOKEN_VOLUME: &str = "admin-token";

/// Builds the StatefulSet and returns it with its revision (the pod-template hash).
pub fn build(mc: &MapCache, validated: &Validated) -> (StatefulSet, String) {
    let mut template = pod_template(mc, validated);
    let revision = revision(&template);
    let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    template_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_LABEL.into(), revision.clone());
    template_meta
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_LABEL.into(), revision.clone());

    let mut metadata = child_meta(mc, mc.name_any());
    metadata.annotations = Some(BTreeMap::from([(REVISION_LABEL.to_string(), revision.clone())]));
    let persistence = &mc.spec.persistence;
    let stateful_set = StatefulSet {
        metadata,
        spec: StatefulSetSpec {
            replicas: Some(mc.spec.replicas),
            service_name: Some(headless_service_name(mc)),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(mc)),
                match_expressions: None,
            },
            template,
            volume_claim_templates: persistence.enabled.then(|| {
                vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(DATA_VOLUME.into()),
                        labels: Some(selector_labels(mc)),
                        ..ObjectMeta::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        storage_class_name: persistence.storage_class_name.clone(),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(BTreeMap::from([(
                                "storage".to_string(),
                                Quantity(persistence.size.clone()),
                            )])),
                            limits: None,
                        }),
                        ..PersistentVolumeClaimSpec::default()
                    }),
                    status: None,
                }]
            }),
            ..StatefulSetSpec::default()
        },
        status: None,
    };
    (stateful_set, revision)
}

/// The revision of a pod template: the first 10 hex digits of the SHA-256 of its JSON (maps are
/// ordered, so equal templates hash equal). Computed before the revision label is added.
pub fn revision(template: &PodTemplateSpec) -> String {
    // Serializing k8s-openapi types to JSON cannot fail: every field is a plain value or map with
    // string keys.
    let json = serde_json::to_vec(template).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().take(5).map(|byte| format!("{byte:02x}")).collect()
}

/// The pod template without the revision: the user's template plus ours.
fn pod_template(mc: &MapCache, validated: &Validated) -> PodTemplateSpec {
    let user = mc.spec.pod_template.clone().unwrap_or_default();
    let user_meta = user.metadata.unwrap_or_default();
    let mut pod_labels = user_meta.labels.unwrap_or_default();
    pod_labels.extend(labels(mc)); // ours win on conflict
    let pod_annotations = user_meta.annotations.filter(|annotations| !annotations.is_empty());

    let mut pod = user.spec.unwrap_or_default();
    pod.containers.push(engine_container(mc, validated));
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    if !mc.spec.persistence.enabled {
        volumes.push(Volume {
            name: DATA_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    volumes.push(Volume {
        name: ADMIN_TOKEN_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(admin_token_secret_name(mc)),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
    // The pod-level context only adds what the engine needs (a group that can write the PVC, the
    // default seccomp profile); the user's own settings for their containers stay.
    let security = pod.security_context.get_or_insert_with(PodSecurityContext::default);
    security.fs_group.get_or_insert(ENGINE_UID);
    security.seccomp_profile.get_or_insert_with(runtime_default_seccomp);
    pod.termination_grace_period_seconds =
        Some(pod.termination_grace_period_seconds.unwrap_or(0).max(TERMINATION_GRACE_SECONDS));
    if mc.spec.affinity.is_some() {
        pod.affinity = mc.spec.affinity.clone();
    }
    if mc.spec.tolerations.is_some() {
        pod.tolerations = mc.spec.tolerations.clone();
    }
    if mc.spec.node_selector.is_some() {
        pod.node_selector = mc.spec.node_selector.clone();
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: pod_annotations,
            ..ObjectMeta::default()
        }),
        spec: Some(pod),
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

/// The `mapcache serve` flags for this spec.
pub fn engine_args(mc: &MapCache, validated: &Validated) -> Vec<String> {
    let engine = &mc.spec.engine;
    let mut args = vec![
        "serve".to_string(),
        "--bind=0.0.0.0".into(),
        format!("--port={}", engine.port),
        "--admin-bind=0.0.0.0".into(),
        format!("--admin-port={}", engine.admin_port),
        format!("--shards={}", engine.shards),
        format!("--data-dir={DATA_DIR}"),
        format!("--admin-token-file={ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}"),
    ];
    if let Some(bytes) = validated.max_memory_bytes {
        args.push(format!("--maxmemory={bytes}"));
        args.push(format!("--eviction-policy={}", engine.eviction_policy.as_str()));
    }
    // Without `auth` the engine has no password, and in protected mode (its default, as Redis's)
    // it would refuse every client from outside its pod. A cache without auth is meant to serve
    // its namespace's clients (NetworkPolicy decides which): say so.
    if mc.spec.auth.is_none() {
        args.push("--protected-mode=no".into());
    }
    args
}

fn engine_container(mc: &MapCache, validated: &Validated) -> Container {
    let admin_port = mc.spec.engine.admin_port;
    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let mut env = vec![
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        },
        EnvVar { name: "MAPCACHE_LOG_FORMAT".into(), value: Some("json".into()), value_from: None },
    ];
    if let Some(auth) = &mc.spec.auth {
        env.push(EnvVar {
            name: "MAPCACHE_PASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: auth.secret_name.clone(),
                    key: "password".into(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        });
    }
    Container {
        name: ENGINE_CONTAINER.into(),
        image: Some(mc.spec.image.clone()),
        image_pull_policy: mc.spec.image_pull_policy.clone(),
        command: Some(vec!["mapcache".into()]),
        args: Some(engine_args(mc, validated)),
        ports: Some(vec![
            ContainerPort {
                name: Some("redis".into()),
                container_port: mc.spec.engine.port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: admin_port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        env: Some(env),
        resources: mc.spec.resources.clone(),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![
                        "mapcache".into(),
                        "admin".into(),
                        "drain".into(),
                        "--local".into(),
                        format!("--admin-port={admin_port}"),
                        format!("--token-file={ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}"),
                    ]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: ADMIN_TOKEN_VOLUME.into(),
                mount_path: ADMIN_TOKEN_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(ENGINE_UID),
            run_as_group: Some(ENGINE_UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{AuthSpec, EvictionPolicy};
    use crate::operator::validate::validate;
    use k8s_openapi::api::core::v1::PodSpec;

    fn built(mc: &MapCache) -> (StatefulSet, String) {
        build(mc, &validate(mc).expect("valid spec"))
    }

    fn pod_spec(sts: &StatefulSet) -> &PodSpec {
        sts.spec.template.spec.as_ref().expect("pod spec")
    }

    fn engine(sts: &StatefulSet) -> &Container {
        pod_spec(sts).containers.iter().find(|c| c.name == "engine").expect("engine container")
    }

    #[test]
    fn statefulset_uses_ondelete_parallel_and_headless_service() {
        let (sts, revision) = built(&MapCache::test());
        let spec = &sts.spec;
        assert_eq!(sts.metadata.name.as_deref(), Some("cache"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("cache-headless"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()),
            Some("OnDelete")
        );
        assert_eq!(
            spec.selector.match_labels,
            Some(BTreeMap::from([
                ("app.kubernetes.io/instance".to_string(), "cache".to_string()),
                ("app.kubernetes.io/name".to_string(), "mapcache".to_string()),
            ]))
        );
        let owners = sts.metadata.owner_references.as_ref().expect("owner");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, "uid-1");
        assert_eq!(revision.len(), 10);
        let template_meta = spec.template.metadata.as_ref().expect("template metadata");
        assert_eq!(
            template_meta.labels.as_ref().and_then(|l| l.get("mapcache.io/revision")),
            Some(&revision)
        );
        assert_eq!(
            template_meta.annotations.as_ref().and_then(|a| a.get("mapcache.io/revision")),
            Some(&revision)
        );
        assert_eq!(
            template_meta
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                .map(String::as_str),
            Some("mapcache-operator")
        );
    }

    #[test]
    fn engine_container_runs_serve_with_spec_flags() {
        let mut mc = MapCache::test();
        mc.spec.engine.shards = 8;
        mc.spec.engine.port = 7000;
        mc.spec.engine.admin_port = 7001;
        mc.spec.engine.max_memory = Some("64Mi".into());
        mc.spec.engine.eviction_policy = EvictionPolicy::AllkeysLru;
        let (sts, _) = built(&mc);
        let engine = engine(&sts);
        assert_eq!(engine.image.as_deref(), Some("ghcr.io/mapcache/mapcache:1.0"));
        assert_eq!(engine.command, Some(vec!["mapcache".to_string()]));
        assert_eq!(
            engine.args.as_deref().expect("args"),
            [
                "serve",
                "--bind=0.0.0.0",
                "--port=7000",
                "--admin-bind=0.0.0.0",
                "--admin-port=7001",
                "--shards=8",
                "--data-dir=/data",
                "--admin-token-file=/etc/mapcache/admin/token",
                "--maxmemory=67108864",
                "--eviction-policy=allkeys-lru",
                "--protected-mode=no",
            ]
        );
        let ports = engine.ports.as_ref().expect("ports");
        assert_eq!(
            ports.iter().map(|p| (p.name.as_deref(), p.container_port)).collect::<Vec<_>>(),
            [(Some("redis"), 7000), (Some("admin"), 7001)]
        );
        let pre_stop = engine.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
        assert_eq!(
            pre_stop
                .and_then(|h| h.exec.as_ref())
                .and_then(|e| e.command.as_deref())
                .expect("preStop"),
            [
                "mapcache",
                "admin",
                "drain",
                "--local",
                "--admin-port=7001",
                "--token-file=/etc/mapcache/admin/token"
            ]
        );
    }

    #[test]
    fn no_maxmemory_flags_without_max_memory() {
        let (sts, _) = built(&MapCache::test());
        let args = engine(&sts).args.clone().expect("args");
        assert_eq!(args.len(), 9);
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--maxmemory") || a.starts_with("--eviction-policy"))
        );
    }

    #[test]
    fn probes_hit_readyz_and_healthz_on_the_admin_port() {
        let (sts, _) = built(&MapCache::test());
        let engine = engine(&sts);
        let readiness =
            engine.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("readiness");
        assert_eq!(readiness.path.as_deref(), Some("/readyz"));
        assert_eq!(readiness.port, IntOrString::String("admin".into()));
        let liveness =
            engine.liveness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("liveness");
        assert_eq!(liveness.path.as_deref(), Some("/healthz"));
        assert_eq!(liveness.port, IntOrString::String("admin".into()));
        assert_eq!(pod_spec(&sts).termination_grace_period_seconds, Some(60));
    }

    #[test]
    fn protected_mode_is_off_only_without_a_password() {
        let protected_mode = |mc: &MapCache| {
            let (sts, _) = built(mc);
            let args = engine(&sts).args.clone().expect("args");
            args.iter().filter(|a| a.starts_with("--protected-mode")).cloned().collect::<Vec<_>>()
        };
        assert_eq!(protected_mode(&MapCache::test()), ["--protected-mode=no"]);
        let mut with_auth = MapCache::test();
        with_auth.spec.auth = Some(AuthSpec { secret_name: "cache-auth".into() });
        assert!(protected_mode(&with_auth).is_empty(), "the password from the Secret guards it");
    }

    #[test]
    fn env_has_pod_ip_log_format_and_password_from_secret() {
        let mut mc = MapCache::test();
        mc.spec.auth = Some(AuthSpec { secret_name: "cache-auth".into() });
        let (sts, _) = built(&mc);
        let env = engine(&sts).env.clone().expect("env");
        assert_eq!(
            env.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["POD_IP", "MAPCACHE_LOG_FORMAT", "MAPCACHE_PASSWORD"]
        );
        assert_eq!(
            env[0]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("status.podIP")
        );
        assert_eq!(env[1].value.as_deref(), Some("json"));
        let secret =
            env[2].value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("secret ref");
        assert_eq!((secret.name.as_str(), secret.key.as_str()), ("cache-auth", "password"));
    }

    #[test]
    fn engine_is_locked_down_non_root() {
        let (sts, _) = built(&MapCache::test());
        let security = engine(&sts).security_context.clone().expect("security context");
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.run_as_user, Some(65532));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_string()]));
        assert_eq!(security.seccomp_profile.map(|p| p.type_), Some("RuntimeDefault".to_string()));
        let pod_security = pod_spec(&sts).security_context.clone().expect("pod security");
        assert_eq!(pod_security.fs_group, Some(65532));
    }

    #[test]
    fn persistence_gives_a_claim_template_and_no_emptydir() {
        let mut mc = MapCache::test();
        mc.spec.persistence.size = "5Gi".into();
        mc.spec.persistence.storage_class_name = Some("fast".into());
        let (sts, _) = built(&mc);
        let claims = sts.spec.volume_claim_templates.clone().expect("claims");
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
        let claim = claims[0].spec.as_ref().expect("claim spec");
        assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(claim.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        assert_eq!(
            claim
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage")),
            Some(&Quantity("5Gi".into()))
        );
        let volumes = pod_spec(&sts).volumes.clone().expect("volumes");
        assert_eq!(volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["admin-token"]);
        assert_eq!(
            volumes[0].secret.as_ref().and_then(|s| s.secret_name.as_deref()),
            Some("cache-admin-token")
        );
        let mounts = engine(&sts).volume_mounts.clone().expect("mounts");
        assert_eq!(
            mounts
                .iter()
                .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
                .collect::<Vec<_>>(),
            [("data", "/data", None), ("admin-token", "/etc/mapcache/admin", Some(true))]
        );
    }

    #[test]
    fn without_persistence_data_is_an_emptydir() {
        let mut mc = MapCache::test();
        mc.spec.persistence.enabled = false;
        let (sts, _) = built(&mc);
        assert_eq!(sts.spec.volume_claim_templates.clone(), None);
        let volumes = pod_spec(&sts).volumes.clone().expect("volumes");
        assert_eq!(
            volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            ["data", "admin-token"]
        );
        assert!(volumes[0].empty_dir.is_some());
    }

    #[test]
    fn sidecar_engine_is_appended_after_app_containers_and_labels_merge_ours_winning() {
        let mut mc = MapCache::test();
        mc.spec.pod_template = Some(PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([
                    ("team".to_string(), "web".to_string()),
                    ("app.kubernetes.io/name".to_string(), "mine".to_string()),
                ])),
                annotations: Some(BTreeMap::from([("note".to_string(), "kept".to_string())])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("web:1".into()),
                    ..Container::default()
                }],
                termination_grace_period_seconds: Some(120),
                ..PodSpec::default()
            }),
        });
        let (sts, _) = built(&mc);
        let pod = pod_spec(&sts);
        assert_eq!(
            pod.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["app", "engine"]
        );
        assert_eq!(pod.containers[0].image.as_deref(), Some("web:1"));
        assert_eq!(pod.termination_grace_period_seconds, Some(120));
        let meta = sts.spec.template.metadata.clone().expect("meta");
        let labels = meta.labels.expect("labels");
        assert_eq!(labels.get("team").map(String::as_str), Some("web"));
        assert_eq!(labels.get("app.kubernetes.io/name").map(String::as_str), Some("mapcache"));
        let annotations = meta.annotations.expect("annotations");
        assert_eq!(annotations.get("note").map(String::as_str), Some("kept"));
    }

    #[test]
    fn revision_changes_with_the_template_only() {
        let (_, first) = built(&MapCache::test());
        let (_, same) = built(&MapCache::test().with_replicas(5));
        assert_eq!(first, same, "replicas are not part of the pod template");
        let (_, changed) = built(&MapCache::test().with_image("ghcr.io/mapcache/mapcache:1.1"));
        assert_ne!(first, changed);
    }
}
