//! `apply`: server-side apply of every wanted child (field manager `mapcache-operator`, forced,
//! so the operator owns the fields it sets), then deletion of the children no longer wanted.
//!
//! Only objects that name this cache as their controller owner are ever deleted, so a user's
//! PodDisruptionBudget or NetworkPolicy of the same name is left alone.

use crate::operator::build::{Children, FIELD_MANAGER, admin_token_secret_name, secret};
use crate::operator::crd::MapCache;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// A failed API call, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {kind} {name}: {source}")]
    Get {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The token in `<name>-admin-token` if the Secret exists with one; else a fresh token
/// (applied with the other children, so it is generated once and kept afterwards).
pub async fn admin_token(client: &kube::Client, mc: &MapCache) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &mc.namespace().unwrap_or_default());
    let name = admin_token_secret_name(mc);
    let existing = secrets.get_opt(&name).await.map_err(|source| Error::Get {
        kind: "Secret",
        name,
        source,
    })?;
    Ok(existing.as_ref().and_then(secret::token_of).unwrap_or_else(secret::generate_token))
}

/// Applies every wanted child and deletes the unwanted ones. The Secret and the ConfigMap go
/// first so the pods find them; the StatefulSet goes last.
pub async fn apply(client: &kube::Client, mc: &MapCache, children: &Children) -> Result<(), Error> {
    let namespace = mc.namespace().unwrap_or_default();
    apply_one(client, &namespace, &children.secret).await?;
    apply_one(client, &namespace, &children.config_map).await?;
    for service in &children.services {
        apply_one(client, &namespace, service).await?;
    }
    match &children.pdb {
        Some(pdb) => apply_one(client, &namespace, pdb).await?,
        None => delete_owned::<PodDisruptionBudget>(client, &namespace, mc).await?,
    }
    match &children.network_policy {
        Some(policy) => apply_one(client, &namespace, policy).await?,
        None => delete_owned::<NetworkPolicy>(client, &namespace, mc).await?,
    }
    apply_one(client, &namespace, &children.stateful_set).await
}

async fn apply_one<K>(client: &kube::Client, namespace: &str, object: &K) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object)).await.map_err(|source| Error::Apply {
        kind: kind::<K>(),
        name,
        source,
    })?;
    Ok(())
}

/// Deletes the child `<cache name>` of kind `K` if it exists and this cache controls it.
async fn delete_owned<K>(client: &kube::Client, namespace: &str, mc: &MapCache) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = mc.name_any();
    let existing = api.get_opt(&name).await.map_err(|source| Error::Get {
        kind: kind::<K>(),
        name: name.clone(),
        source,
    })?;
    let Some(existing) = existing else { return Ok(()) };
    let ours = existing.owner_references().iter().any(|owner| {
        owner.controller == Some(true) && Some(&owner.uid) == mc.metadata.uid.as_ref()
    });
    if !ours {
        return Ok(());
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        // Someone else deleted it between our get and delete: the wanted state is reached.
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(Error::Delete { kind: kind::<K>(), name, source }),
    }
}

fn kind<K: k8s_openapi::Resource>() -> &'static str {
    K::KIND
}
