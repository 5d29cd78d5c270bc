//! Which nodes a `mapcache admin` command talks to: the pods of a MapCache found through the
//! Kubernetes API (admin token from the Secret `<cache>-admin-token`), or with `--local` the
//! node on this machine (`$POD_IP`, else 127.0.0.1; token from `--token-file`), no Kubernetes.

use super::{AdminError, TargetArgs};
use crate::operator::crd::MapCache;
use crate::operator::node_client::{NodeClient, http_client};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use std::path::Path;

/// Label selector of a cache's pods (the operator's pod contract).
pub fn pod_selector(cache: &str) -> String {
    format!("app.kubernetes.io/name=mapcache,app.kubernetes.io/instance={cache}")
}

/// Name of the Secret holding a cache's admin token (key `token`).
pub fn admin_token_secret(cache: &str) -> String {
    format!("{cache}-admin-token")
}

/// One node to talk to.
#[derive(Clone, Debug)]
pub struct NodeTarget {
    pub pod: String,
    pub ip: Option<String>,
    /// `None` when the pod has no IP yet.
    pub client: Option<NodeClient>,
}

/// The resolved targets, and the Kubernetes context when there is one.
pub struct Resolved {
    pub targets: Vec<NodeTarget>,
    pub kube: Option<KubeContext>,
}

/// What the checklist needs beyond the nodes.
pub struct KubeContext {
    pub client: kube::Client,
    pub namespace: String,
    pub cache: MapCache,
}

/// Reads a token file; surrounding whitespace (a trailing newline) is not part of the token.
pub fn read_token_file(path: &Path) -> Result<String, AdminError> {
    let raw = std::fs::read_to_string(path)
        .map_err(|source| AdminError::TokenFile { path: path.display().to_string(), source })?;
    let token = raw.trim().to_string();
    if token.is_empty() {
        return Err(AdminError::Usage(format!("token file {} is empty", path.display())));
    }
    Ok(token)
}

/// The address `--local` targets: `--address`, else `$POD_IP`, else 127.0.0.1.
pub fn local_address(explicit: Option<&str>, pod_ip_env: Option<&str>) -> String {
    explicit
        .or(pod_ip_env.filter(|ip| !ip.trim().is_empty()))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

pub async fn resolve(args: &TargetArgs) -> Result<Resolved, AdminError> {
    let http = http_client().map_err(AdminError::HttpClient)?;
    if args.local {
        let token = args.token_file.as_deref().map(read_token_file).transpose()?;
        let pod_ip = std::env::var("POD_IP").ok();
        let host = local_address(args.address.as_deref(), pod_ip.as_deref());
        let port = args.admin_port.unwrap_or(9090);
        let pod = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_string());
        let client = NodeClient::new(http, &host, port, token);
        return Ok(Resolved {
            targets: vec![NodeTarget { pod, ip: Some(host), client: Some(client) }],
            kube: None,
        });
    }
    let Some(cache_name) = args.cache.as_deref() else {
        return Err(AdminError::Usage("--cache is required (or --local on a cache pod)".into()));
    };
    let client = kube::Client::try_default().await.map_err(AdminError::KubeConfig)?;
    let namespace =
        args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let caches: Api<MapCache> = Api::namespaced(client.clone(), &namespace);
    let cache = caches.get_opt(cache_name).await.map_err(AdminError::kube("get MapCache"))?;
    let Some(cache) = cache else {
        return Err(AdminError::Usage(format!(
            "MapCache {cache_name} not found in namespace {namespace}"
        )));
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let token = match args.token_file.as_deref() {
        Some(path) => Some(read_token_file(path)?),
        None => secrets
            .get_opt(&admin_token_secret(cache_name))
            .await
            .map_err(AdminError::kube("get admin-token Secret"))?
            .and_then(|s| s.data)
            .and_then(|data| data.get("token").cloned())
            .map(|bytes| String::from_utf8_lossy(&bytes.0).trim().to_string())
            .filter(|t| !t.is_empty()),
    };
    let port = match args.admin_port {
        Some(port) => port,
        None => u16::try_from(cache.spec.engine.admin_port).map_err(|_| {
            AdminError::Usage(format!(
                "spec.engine.adminPort {} is not a port",
                cache.spec.engine.admin_port
            ))
        })?,
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let mut listed = pods
        .list(&ListParams::default().labels(&pod_selector(cache_name)))
        .await
        .map_err(AdminError::kube("list pods"))?
        .items;
    listed.sort_by_key(|p| ordinal(p.metadata.name.as_deref().unwrap_or_default()));
    if let Some(wanted) = args.pod.as_deref() {
        listed.retain(|p| p.metadata.name.as_deref() == Some(wanted));
        if listed.is_empty() {
            return Err(AdminError::Usage(format!(
                "pod {wanted} is not a pod of MapCache {cache_name} in namespace {namespace}"
            )));
        }
    }
    let targets = listed
        .iter()
        .map(|pod| {
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            let client =
                ip.as_deref().map(|ip| NodeClient::new(http.clone(), ip, port, token.clone()));
            NodeTarget { pod: pod.metadata.name.clone().unwrap_or_default(), ip, client }
        })
        .collect();
    Ok(Resolved { targets, kube: Some(KubeContext { client, namespace, cache }) })
}

/// The StatefulSet ordinal of a pod name (`mc-12` -> 12); names without one sort first.
pub fn ordinal(name: &str) -> i64 {
    name.rsplit_once('-').and_then(|(_, n)| n.parse().ok()).unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_address_prefers_flag_then_pod_ip_then_loopback() {
        assert_eq!(local_address(Some("10.1.1.1"), Some("10.2.2.2")), "10.1.1.1");
        assert_eq!(local_address(None, Some("10.2.2.2")), "10.2.2.2");
        assert_eq!(local_address(None, Some("  ")), "127.0.0.1");
        assert_eq!(local_address(None, None), "127.0.0.1");
    }

    #[test]
    fn token_file_is_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(read_token_file(&path).expect("token"), "s3cret");
        std::fs::write(&path, "\n").expect("write");
        let error = read_token_file(&path).unwrap_err().to_string();
        assert_eq!(error, format!("token file {} is empty", path.display()));
        let missing = read_token_file(&dir.path().join("missing")).unwrap_err();
        assert!(missing.to_string().starts_with("cannot read token file "), "{missing}");
    }

    #[test]
    fn names_follow_the_operator_contract() {
        assert_eq!(
            pod_selector("mc"),
            "app.kubernetes.io/name=mapcache,app.kubernetes.io/instance=mc"
        );
        assert_eq!(admin_token_secret("mc"), "mc-admin-token");
        assert_eq!(ordinal("my-cache-12"), 12);
        assert_eq!(ordinal("nohyphen"), -1);
    }
}
