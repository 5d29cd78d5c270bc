//! Every example in manifests/examples decodes as a MapCache, passes `validate` (which also runs
//! the checks the schema's CEL rules make), and builds the children it promises.

use mapcache::operator::build;
use mapcache::operator::crd::MapCache;
use mapcache::operator::validate::validate;

fn example(name: &str) -> MapCache {
    let path = format!("{}/manifests/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut mc: MapCache = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    mc.metadata.namespace = Some("default".into());
    mc.metadata.uid = Some("uid".into());
    mc
}

fn engine_args(mc: &MapCache) -> Vec<String> {
    let children = build::build(mc, &validate(mc).expect("valid"), "token");
    let pod = children.stateful_set.spec.template.spec.expect("pod spec");
    pod.containers
        .into_iter()
        .find(|c| c.name == "engine")
        .and_then(|c| c.args)
        .expect("engine args")
}

#[test]
fn basic_example_has_three_pods_with_persistence() {
    let mc = example("basic.yaml");
    assert_eq!(mc.spec.replicas, 3);
    assert!(mc.spec.persistence.enabled);
    let children = build::build(&mc, &validate(&mc).expect("valid"), "token");
    let claims = children.stateful_set.spec.volume_claim_templates.expect("claims");
    assert_eq!(claims.len(), 1);
    assert_eq!(engine_args(&mc)[5], "--shards=16");
}

#[test]
fn sidecar_example_puts_engine_after_the_app_container() {
    let mc = example("sidecar.yaml");
    let children = build::build(&mc, &validate(&mc).expect("valid"), "token");
    let pod = children.stateful_set.spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["web", "engine"]
    );
}

#[test]
fn tuned_example_passes_maxmemory_and_policy() {
    let mc = example("tuned.yaml");
    let validated = validate(&mc).expect("valid");
    assert_eq!(validated.max_memory_bytes, Some(512 * 1024 * 1024));
    assert_eq!(validated.checklist_timeout.as_secs(), 600);
    let args = engine_args(&mc);
    assert_eq!(
        &args[8..],
        ["--maxmemory=536870912", "--eviction-policy=allkeys-lru", "--protected-mode=no"]
    );
}
