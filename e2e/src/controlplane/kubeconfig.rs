//! Kubeconfig files with everything inline (CA, client certificate or token), so kubectl, Helm,
//! kube-rs and the operator read them anywhere, as any cluster's.

use serde_json::json;

/// How a kubeconfig's user authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A client certificate and key (PEM).
    ClientCertificate { cert_pem: String, key_pem: String },
    /// A bearer token, e.g. a service account's from the TokenRequest API.
    Token(String),
}

fn base64(bytes: &[u8]) -> serde_json::Value {
    // k8s-openapi's ByteString serializes as standard base64, what kubeconfig's *-data fields hold.
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).unwrap_or_default()
}

/// A kubeconfig with one cluster, one user and one context (namespace `namespace`).
pub fn render(server: &str, ca_pem: &str, user: &Credentials, namespace: &str) -> String {
    let user = match user {
        Credentials::ClientCertificate { cert_pem, key_pem } => json!({
            "client-certificate-data": base64(cert_pem.as_bytes()),
            "client-key-data": base64(key_pem.as_bytes()),
        }),
        Credentials::Token(token) => json!({ "token": token }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mapcache-e2e", "cluster": {
            "server": server,
            "certificate-authority-data": base64(ca_pem.as_bytes()),
        }}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "mapcache-e2e", "context": {
            "cluster": "mapcache-e2e", "user": "user", "namespace": namespace,
        }}],
        "current-context": "mapcache-e2e",
    });
    serde_yaml::to_string(&config).unwrap_or_default()
}

/// A kube-rs client from a rendered kubeconfig.
pub async fn client(kubeconfig: &str) -> Result<kube::Client, kube::Error> {
    let file = kube::config::Kubeconfig::from_yaml(kubeconfig)
        .map_err(|e| kube::Error::Service(Box::new(e)))?;
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
    kube::Client::try_from(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_kubeconfig_names_the_server_the_ca_and_the_token() {
        let text = render("https://127.0.0.1:6443", "CA", &Credentials::Token("t0k".into()), "ns");
        let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
        let raw: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(raw["users"][0]["user"]["token"], "t0k");
        assert_eq!(parsed.contexts[0].context.as_ref().unwrap().namespace.as_deref(), Some("ns"));
    }
}
