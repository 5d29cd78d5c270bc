//! What a volume holds, read through the API: the keys of a Secret or ConfigMap (all, or
//! `items`), downwardAPI fields, the sources of a projected volume (with service-account tokens
//! from the TokenRequest API, renewed at 80 % of their lifetime as the kubelet's token manager
//! does), and the directory of a bound claim's PV. Nothing here touches the disk.

use super::files::VolumeFile;
use super::{Content, VolumeError};
use crate::kubelet::env::{self, ConfigError, ObjectKind, PodAddresses};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount,
    ServiceAccountTokenProjection, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Mode of Secret, ConfigMap, downwardAPI and projected files without `defaultMode`.
const DEFAULT_FILE_MODE: i32 = 0o644;
/// Token lifetime of a projected serviceAccountToken without `expirationSeconds`.
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// Tokens of projected serviceAccountToken sources, renewed at 80 % of their lifetime.
#[derive(Default)]
pub struct Tokens {
    /// (volume, path) -> (token, renew after).
    cache: HashMap<(String, String), (String, Instant)>,
}

/// What `volume` becomes (its type is a supported one: `super::unsupported` ran first).
pub(super) async fn content(
    client: &Client,
    pod: &Pod,
    volume: &Volume,
    addresses: &PodAddresses,
    tokens: &mut Tokens,
) -> Result<Content, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(claim) = &volume.persistent_volume_claim {
        return Ok(Content::Claim(claim_directory(client, &namespace, &claim.claim_name).await?));
    }
    if let Some(host_path) = &volume.host_path {
        return Ok(Content::Host(PathBuf::from(&host_path.path)));
    }
    let files = if let Some(secret) = &volume.secret {
        let name = secret.secret_name.as_deref().unwrap_or_default();
        let source =
            KeySource::new(ObjectKind::Secret, name, secret.items.as_ref(), secret.optional);
        let mode = secret.default_mode.unwrap_or(DEFAULT_FILE_MODE);
        source.files(client, &namespace, mode).await?
    } else if let Some(cm) = &volume.config_map {
        let source =
            KeySource::new(ObjectKind::ConfigMap, &cm.name, cm.items.as_ref(), cm.optional);
        source.files(client, &namespace, cm.default_mode.unwrap_or(DEFAULT_FILE_MODE)).await?
    } else if let Some(downward) = &volume.downward_api {
        let mode = downward.default_mode.unwrap_or(DEFAULT_FILE_MODE);
        downward_files(pod, addresses, downward.items.as_ref(), mode)?
    } else if volume.projected.is_some() {
        projected_files(client, pod, volume, addresses, tokens).await?
    } else {
        return Ok(Content::Empty);
    };
    Ok(Content::Files(files))
}

/// A Secret or ConfigMap whose keys become files, as a volume or a projected source names it.
struct KeySource<'a> {
    kind: ObjectKind,
    name: &'a str,
    /// Which keys, at which paths and modes; None: every key at its own name.
    items: Option<&'a Vec<KeyToPath>>,
    /// A missing object or key is no error.
    optional: bool,
}

impl<'a> KeySource<'a> {
    fn new(
        kind: ObjectKind,
        name: &'a str,
        items: Option<&'a Vec<KeyToPath>>,
        optional: Option<bool>,
    ) -> Self {
        Self { kind, name, items, optional: optional.unwrap_or(false) }
    }

    /// Its files, `default_mode` for those without a `mode` of their own.
    async fn files(
        &self,
        client: &Client,
        namespace: &str,
        default_mode: i32,
    ) -> Result<Vec<VolumeFile>, VolumeError> {
        let data = env::object_data_unless_optional(
            client,
            namespace,
            self.kind,
            self.name,
            self.optional,
        )
        .await?;
        match data {
            Some(data) => select_keys(self, data, default_mode),
            None => Ok(Vec::new()),
        }
    }
}

fn select_keys(
    source: &KeySource<'_>,
    mut data: BTreeMap<String, Vec<u8>>,
    default_mode: i32,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let mode = |m: Option<i32>| (m.unwrap_or(default_mode) as u32) & 0o777;
    let Some(items) = source.items.filter(|items| !items.is_empty()) else {
        return Ok(data
            .into_iter()
            .map(|(key, bytes)| VolumeFile { path: key, bytes, mode: mode(None) })
            .collect());
    };
    let mut files = Vec::new();
    for item in items {
        match data.remove(&item.key) {
            Some(bytes) => {
                files.push(VolumeFile { path: item.path.clone(), bytes, mode: mode(item.mode) })
            }
            None if source.optional => {}
            None => {
                return Err(ConfigError(format!(
                    "{} {} references non-existent key: {}",
                    source.kind.as_str(),
                    source.name,
                    item.key
                )));
            }
        }
    }
    Ok(files)
}

fn downward_files(
    pod: &Pod,
    addresses: &PodAddresses,
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    default_mode: i32,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let mut files = Vec::new();
    for item in items.into_iter().flatten() {
        let Some(field) = &item.field_ref else {
            tracing::info!(
                path = item.path,
                "downwardAPI resourceFieldRef not supported; file skipped"
            );
            continue;
        };
        let value = env::field_value(pod, addresses, &field.field_path).map_err(ConfigError)?;
        let mode = (item.mode.unwrap_or(default_mode) as u32) & 0o777;
        files.push(VolumeFile { path: item.path.clone(), bytes: value.into_bytes(), mode });
    }
    Ok(files)
}

async fn projected_files(
    client: &Client,
    pod: &Pod,
    volume: &Volume,
    addresses: &PodAddresses,
    tokens: &mut Tokens,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(projected) = &volume.projected else { return Ok(Vec::new()) };
    let default_mode = projected.default_mode.unwrap_or(DEFAULT_FILE_MODE);
    let mut files = Vec::new();
    for source in projected.sources.iter().flatten() {
        let config_map = source.config_map.as_ref().map(|cm| {
            KeySource::new(ObjectKind::ConfigMap, &cm.name, cm.items.as_ref(), cm.optional)
        });
        let secret = source.secret.as_ref().map(|secret| {
            KeySource::new(ObjectKind::Secret, &secret.name, secret.items.as_ref(), secret.optional)
        });
        let keys = config_map.or(secret);
        if let Some(keys) = keys {
            files.extend(keys.files(client, &namespace, default_mode).await?);
        } else if let Some(downward) = &source.downward_api {
            files.extend(downward_files(pod, addresses, downward.items.as_ref(), default_mode)?);
        } else if let Some(token) = &source.service_account_token {
            let value = tokens.get(client, pod, &volume.name, token).await?;
            files.push(VolumeFile {
                path: token.path.clone(),
                bytes: value.into_bytes(),
                mode: (default_mode as u32) & 0o777,
            });
        } else {
            tracing::info!(volume = volume.name, "projected source not supported; skipped");
        }
    }
    Ok(files)
}

impl Tokens {
    /// The cached token of this source, or a new one when it is due for renewal.
    async fn get(
        &mut self,
        client: &Client,
        pod: &Pod,
        volume: &str,
        token: &ServiceAccountTokenProjection,
    ) -> Result<String, VolumeError> {
        let key = (volume.to_string(), token.path.clone());
        if let Some((value, renew)) = self.cache.get(&key)
            && Instant::now() < *renew
        {
            return Ok(value.clone());
        }
        let seconds = token.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
        let value = request_token(client, pod, token.audience.clone(), seconds).await?;
        let renew = Instant::now() + Duration::from_secs(seconds.max(1) as u64 * 8 / 10);
        self.cache.insert(key, (value.clone(), renew));
        Ok(value)
    }
}

/// A token for the pod's service account, bound to the pod (TokenRequest API).
async fn request_token(
    client: &Client,
    pod: &Pod,
    audience: Option<String>,
    seconds: i64,
) -> Result<String, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_string());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.map(|a| vec![a]),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let issued = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| ConfigError(format!("token for serviceaccount {namespace}/{account}: {e}")))?;
    issued.status.and_then(|s| s.token).ok_or_else(|| {
        ConfigError(format!("token for serviceaccount {namespace}/{account}: empty"))
    })
}

/// The host directory of a bound claim; the pod waits while the claim is unbound.
async fn claim_directory(
    client: &Client,
    namespace: &str,
    claim: &str,
) -> Result<PathBuf, VolumeError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| ConfigError(format!("get persistentvolumeclaim {namespace}/{claim}: {e}")))?
        .ok_or_else(|| ConfigError(format!("persistentvolumeclaim \"{claim}\" not found")))?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume_name = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    if !bound || volume_name.is_empty() {
        return Err(ConfigError(format!("persistentvolumeclaim \"{claim}\" is not bound")));
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes
        .get_opt(&volume_name)
        .await
        .map_err(|e| ConfigError(format!("get persistentvolume {volume_name}: {e}")))?
        .ok_or_else(|| ConfigError(format!("persistentvolume \"{volume_name}\" not found")))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec.host_path.map(|h| h.path).or(spec.local.map(|l| l.path)).ok_or_else(|| {
        ConfigError(format!("persistentvolume {volume_name} is neither hostPath nor local"))
    })?;
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_select_keys_and_modes() {
        let data = BTreeMap::from([
            ("password".to_string(), b"pw".to_vec()),
            ("token".to_string(), b"t".to_vec()),
        ]);
        let every_key = KeySource::new(ObjectKind::Secret, "s", None, None);
        let all = select_keys(&every_key, data.clone(), 0o440).expect("all");
        let listed: Vec<(String, u32)> = all.iter().map(|f| (f.path.clone(), f.mode)).collect();
        assert_eq!(listed, vec![("password".into(), 0o440), ("token".into(), 0o440)]);
        let items = vec![KeyToPath {
            key: "token".into(),
            path: "dir/t".into(),
            mode: Some(0o400),
            ..KeyToPath::default()
        }];
        let listed = KeySource::new(ObjectKind::Secret, "s", Some(&items), None);
        let some = select_keys(&listed, data.clone(), 0o644).expect("items");
        assert_eq!(some.len(), 1);
        assert_eq!(
            (some[0].path.as_str(), some[0].mode, some[0].bytes.as_slice()),
            ("dir/t", 0o400, &b"t"[..])
        );
        let missing =
            vec![KeyToPath { key: "nope".into(), path: "n".into(), ..KeyToPath::default() }];
        let required = KeySource::new(ObjectKind::Secret, "s", Some(&missing), None);
        assert_eq!(
            select_keys(&required, data.clone(), 0o644).err(),
            Some(ConfigError("secret s references non-existent key: nope".into()))
        );
        let optional = KeySource::new(ObjectKind::Secret, "s", Some(&missing), Some(true));
        assert_eq!(select_keys(&optional, data, 0o644).map(|f| f.len()), Ok(0));
    }
}
