//! HTTP routing: `/api/v1/...` and `/apis/<group>/<version>/...` paths, parsed by hand so any
//! registered resource is served, dispatched to store operations.

use super::ApiState;
use super::error::{ApiError, ApiResult};
use super::eviction;
use super::patch::{PatchKind, apply_patch};
use super::registry::ResourceInfo;
use super::selector::{FieldSelector, LabelSelector};
use super::store::DeleteOptions;
use super::watch::{WatchRequest, watch};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

fn respond(code: StatusCode, body: &Value) -> Response {
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}

/// One request against a resource, after path parsing.
struct Target {
    info: ResourceInfo,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// Apply bodies are YAML (JSON is YAML too).
fn parse_apply_body(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).or_else(|_| {
        serde_yaml::from_slice::<Value>(body).map_err(|e| {
            ApiError::bad_request(format!("the apply body is neither JSON nor YAML: {e}"))
        })
    })
}

pub async fn handle(
    State(state): State<ApiState>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match route(&state, &method, &uri, &query, &headers, &body) {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%method, %uri, code = error.code, message = %error.message, "request failed");
            error.into_response()
        }
    }
}

fn route(
    state: &ApiState,
    method: &Method,
    uri: &Uri,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let registry = state.store.registry();
    let (group, version, rest) = match segments.as_slice() {
        [] | ["healthz"] | ["readyz"] | ["livez"] => {
            return Ok((StatusCode::OK, "ok").into_response());
        }
        ["version"] => {
            return Ok(respond(
                StatusCode::OK,
                &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-mapcache-e2e", "platform": "linux/amd64"}),
            ));
        }
        ["api"] => {
            return Ok(respond(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            ));
        }
        ["apis"] => {
            let groups: Vec<Value> = registry
                .groups()
                .into_iter()
                .filter(|(group, _)| !group.is_empty())
                .map(|(group, versions)| {
                    let versions: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                        .collect();
                    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            return Ok(respond(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ));
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group] => {
            let versions = registry
                .groups()
                .remove(*group)
                .ok_or_else(|| ApiError::not_found("group", group))?;
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            return Ok(respond(
                StatusCode::OK,
                &json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": versions[0]}),
            ));
        }
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::not_found("path", uri.path())),
    };
    if rest.is_empty() {
        if registry.in_group_version(group, version).next().is_none() {
            return Err(ApiError::not_found("groupVersion", &format!("{group}/{version}")));
        }
        return Ok(respond(StatusCode::OK, &registry.resource_list(group, version)));
    }
    let (namespace, plural, name, subresource) = match rest {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => (
            Some(ns.to_string()),
            *plural,
            tail.first().map(|s| s.to_string()),
            tail.get(1).map(|s| s.to_string()),
        ),
        [plural, tail @ ..] => {
            (None, *plural, tail.first().map(|s| s.to_string()), tail.get(1).map(|s| s.to_string()))
        }
        [] => return Err(ApiError::not_found("path", uri.path())),
    };
    let info = registry.lookup(group, version, plural).cloned().ok_or_else(|| {
        ApiError::not_found("resource", &format!("{plural} in {group}/{version}"))
            .with_details(json!({"kind": plural}))
    })?;
    if info.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::not_found(&info.qualified(), name.as_deref().unwrap_or_default()));
    }
    let target = Target { info, namespace, name, subresource };
    dispatch(state, method, target, query, headers, body)
}

fn manager(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    query
        .get("fieldManager")
        .cloned()
        .or_else(|| {
            headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn dispatch(
    state: &ApiState,
    method: &Method,
    target: Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let store = &state.store;
    let info = &target.info;
    let ns = target.namespace.clone().unwrap_or_default();
    let manager = manager(query, headers);
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
    let Some(name) = target.name.clone() else {
        return match *method {
            Method::GET if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) => {
                let request = WatchRequest::from_query(target.namespace.clone(), query)?;
                Ok(watch(store.clone(), info.clone(), request, state.bookmark_interval))
            }
            Method::GET => {
                let (items, rv) = store.list(info, target.namespace.as_deref(), &labels, &fields);
                Ok(respond(StatusCode::OK, &list_body(info, items, rv)))
            }
            Method::POST => {
                if info.namespaced && target.namespace.is_none() {
                    return Err(ApiError::not_found("namespace", ""));
                }
                let object = store.create(info, &ns, parse_body(body)?, &manager)?;
                Ok(respond(StatusCode::CREATED, &object))
            }
            Method::DELETE => {
                let options = delete_options(body, query)?;
                let (items, rv) = store.list(info, target.namespace.as_deref(), &labels, &fields);
                let mut deleted = Vec::new();
                for item in items {
                    let item_ns = item
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let item_name = item
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    deleted.push(store.delete(info, &item_ns, &item_name, &options)?);
                }
                Ok(respond(StatusCode::OK, &list_body(info, deleted, rv)))
            }
            _ => Err(ApiError::method_not_allowed(format!(
                "{method} is not supported on a collection"
            ))),
        };
    };
    let status_endpoint = match target.subresource.as_deref() {
        None => false,
        Some("status") if info.status_subresource => true,
        Some("eviction")
            if info.group.is_empty() && info.plural == "pods" && *method == Method::POST =>
        {
            let status = eviction::evict(store, &ns, &name, &parse_body(body)?)?;
            return Ok(respond(StatusCode::CREATED, &status));
        }
        Some(other) => {
            return Err(ApiError::not_found(&format!("{}/{other}", info.qualified()), &name));
        }
    };
    match *method {
        Method::GET => Ok(respond(StatusCode::OK, &store.get(info, &ns, &name)?)),
        Method::PUT => {
            let desired = parse_body(body)?;
            let object =
                store.update(info, &ns, &name, status_endpoint, &manager, |_| Ok(desired))?;
            Ok(respond(StatusCode::OK, &object))
        }
        Method::PATCH => {
            let content_type =
                headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let kind = PatchKind::from_content_type(content_type)?;
            let object = if kind == PatchKind::Apply {
                let Some(field_manager) = query.get("fieldManager") else {
                    return Err(ApiError::bad_request(
                        "PATCH with apply-patch requires the fieldManager query parameter",
                    ));
                };
                let force = matches!(query.get("force").map(String::as_str), Some("true" | "1"));
                store.apply(
                    info,
                    &ns,
                    &name,
                    status_endpoint,
                    field_manager,
                    &parse_apply_body(body)?,
                    force,
                )?
            } else {
                store.update(info, &ns, &name, status_endpoint, &manager, |current| {
                    let mut patched = current.clone();
                    apply_patch(kind, &mut patched, body)?;
                    Ok(patched)
                })?
            };
            Ok(respond(StatusCode::OK, &object))
        }
        Method::DELETE if !status_endpoint => {
            let object = store.delete(info, &ns, &name, &delete_options(body, query)?)?;
            Ok(respond(StatusCode::OK, &object))
        }
        _ => Err(ApiError::method_not_allowed(format!("{method} is not supported here"))),
    }
}

fn delete_options(body: &Bytes, query: &HashMap<String, String>) -> ApiResult<DeleteOptions> {
    let mut options = DeleteOptions::from_json(&parse_body(body)?);
    if let Some(policy) = query.get("propagationPolicy") {
        options.propagation_policy = Some(policy.clone());
    }
    if let Some(grace) = query.get("gracePeriodSeconds") {
        options.grace_period_seconds = Some(grace.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid gracePeriodSeconds: {grace:?}"))
        })?);
    }
    Ok(options)
}

fn list_body(info: &ResourceInfo, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "kind": format!("{}List", info.kind),
        "apiVersion": info.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}
