//! The committed CRD is the generator's output, and the schema carries the validation users
//! rely on (defaults, ranges, enums, CEL rules).

use mapcache::operator::crd::{MapCache, crd_yaml};
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

#[test]
fn committed_crd_matches_the_generator() {
    assert!(
        repo_file("crds/mapcache.yaml") == crd_yaml(),
        "crds/mapcache.yaml is stale: run scripts/gen-manifests.sh"
    );
}

#[test]
fn chart_crd_matches_the_generator() {
    assert!(
        repo_file("charts/mapcache-operator/crds/mapcache.yaml") == crd_yaml(),
        "charts/mapcache-operator/crds/mapcache.yaml is stale: run scripts/gen-manifests.sh"
    );
}

fn spec_schema() -> Value {
    let crd: Value = serde_yaml::from_str(&crd_yaml()).expect("CRD YAML parses");
    assert_eq!(crd["spec"]["group"], "mapcache.io");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "mc");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    version["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn printer_columns_are_ready_keys_tombstones_phase_age() {
    let crd: Value = serde_yaml::from_str(&crd_yaml()).expect("CRD YAML parses");
    let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(columns, ["Ready", "Keys", "Tombstones", "Phase", "Age"]);
}

#[test]
fn schema_has_defaults_ranges_and_enums() {
    let spec = spec_schema();
    let props = &spec["properties"];
    assert_eq!(props["image"]["minLength"], 1);
    assert_eq!(props["replicas"]["default"], 1);
    assert_eq!(props["replicas"]["maximum"], 1024.0);
    let engine = &props["engine"]["properties"];
    assert_eq!(
        engine["evictionPolicy"]["enum"],
        serde_json::json!(["noeviction", "allkeys-random", "allkeys-lru", "volatile-ttl"])
    );
    assert_eq!(engine["port"]["minimum"], 1.0);
    assert_eq!(engine["adminPort"]["maximum"], 65535.0);
    assert_eq!(engine["maxMemory"]["pattern"], "^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$");
    let maintenance = &props["maintenance"];
    assert_eq!(maintenance["properties"]["compactAtTombstoneRatio"]["maximum"], 1.0);
    assert_eq!(maintenance["properties"]["cooldown"]["pattern"], "^([0-9]+(ms|s|m|h))+$");
    assert_eq!(
        props["rollout"]["properties"]["onTimeout"]["enum"],
        serde_json::json!(["Block", "Proceed"])
    );
    assert_eq!(props["persistence"]["properties"]["enabled"]["default"], true);
    assert_eq!(props["image"]["description"], "Image that carries the `mapcache` binary.");
}

#[test]
fn schema_has_cel_rules_for_dependent_fields() {
    let spec = spec_schema();
    let rule =
        |schema: &Value| schema["x-kubernetes-validations"][0]["rule"].as_str().map(String::from);
    assert_eq!(rule(&spec).as_deref(), Some("self.engine.port != self.engine.adminPort"));
    assert_eq!(
        rule(&spec["properties"]["maintenance"]).as_deref(),
        Some("self.rebuildAtTombstoneRatio >= self.compactAtTombstoneRatio")
    );
    assert_eq!(
        rule(&spec["properties"]["engine"]["properties"]["shards"]).as_deref(),
        Some("self in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]")
    );
}

#[test]
fn unknown_eviction_policy_still_deserializes_so_validate_can_report_it() {
    let json = serde_json::json!({
        "apiVersion": "mapcache.io/v1alpha1", "kind": "MapCache",
        "metadata": {"name": "old", "namespace": "ns"},
        "spec": {"image": "mapcache:1", "engine": {"evictionPolicy": "allkeys-lfu"}}
    });
    let mc: MapCache = serde_json::from_value(json).expect("decodes");
    assert_eq!(mc.spec.engine.eviction_policy.as_str(), "allkeys-lfu");
    let error = mapcache::operator::validate::validate(&mc).expect_err("rejected");
    assert!(error.to_string().starts_with("spec.engine.evictionPolicy \"allkeys-lfu\" is unknown"));
}

#[test]
fn every_schema_format_is_one_kubernetes_knows() {
    // kube-apiserver warns "unrecognized format" on every apply of a CRD with others (seen on
    // the real control plane with schemars' uint32/uint64).
    fn formats(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let (Some(Value::String(format)), true) =
                    (map.get("format"), map.contains_key("type"))
                {
                    found.push(format.clone());
                }
                map.values().for_each(|v| formats(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| formats(v, found)),
            _ => {}
        }
    }
    let crd: Value = serde_yaml::from_str(&crd_yaml()).expect("CRD YAML parses");
    let mut found = Vec::new();
    formats(&crd, &mut found);
    found.sort();
    found.dedup();
    assert!(!found.is_empty(), "int32/int64 formats are expected");
    for format in &found {
        assert!(
            ["int32", "int64", "double", "float", "byte", "date-time"].contains(&format.as_str()),
            "{format}"
        );
    }
}
