//! Watch streams: newline-delimited `WatchEvent` JSON, replay from a resourceVersion, selector
//! transitions (an object that stops matching is DELETED for that watch), bookmarks, and a
//! `410 Gone` ERROR event when the requested version is older than the kept history.

use super::error::{ApiError, ApiResult};
use super::registry::ResourceInfo;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Change, ChangeKind, Store};
use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::SinkExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The query parameters of a watch request.
pub struct WatchRequest {
    pub namespace: Option<String>,
    pub since: Option<u64>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub bookmarks: bool,
    pub timeout: Duration,
}

impl WatchRequest {
    pub fn from_query(
        namespace: Option<String>,
        query: &HashMap<String, String>,
    ) -> ApiResult<Self> {
        let since =
            match query.get("resourceVersion").map(String::as_str) {
                None | Some("") | Some("0") => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv:?}"))
                })?),
            };
        let timeout = match query.get("timeoutSeconds") {
            Some(seconds) => Duration::from_secs(seconds.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds: {seconds:?}"))
            })?),
            None => Duration::from_secs(1800),
        };
        Ok(Self {
            namespace,
            since,
            labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
            fields: FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?,
            bookmarks: matches!(
                query.get("allowWatchBookmarks").map(String::as_str),
                Some("true" | "1")
            ),
            timeout,
        })
    }

    fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event type this watch sees for a change, if any.
    fn event_type(&self, change: &Change) -> Option<&'static str> {
        let now = self.matches(&change.object);
        match change.kind {
            ChangeKind::Added => now.then_some("ADDED"),
            ChangeKind::Deleted => now.then_some("DELETED"),
            ChangeKind::Modified => {
                match (change.old.as_ref().is_some_and(|old| self.matches(old)), now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": event_type, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Start a watch; the stream runs in its own task until the timeout or the client leaves.
pub fn watch(
    store: Arc<Store>,
    info: ResourceInfo,
    request: WatchRequest,
    bookmark_every: Duration,
) -> Response {
    let (mut sender, body) = futures::channel::mpsc::channel::<Result<Bytes, Infallible>>(256);
    let start = store.watch_start(&info, request.namespace.as_deref(), request.since);
    tokio::spawn(async move {
        let (mut receiver, replay, mut seen) = match start {
            Ok(start) => start,
            Err(gone) => {
                let _ = sender.send(Ok(line("ERROR", &gone.status()))).await;
                return;
            }
        };
        let key = info.key();
        for change in replay {
            if let Some(event_type) = request.event_type(&change)
                && sender.send(Ok(line(event_type, &change.object))).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(request.timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(bookmark_every);
        bookmark.tick().await;
        loop {
            let next = tokio::select! {
                received = receiver.recv() => received,
                _ = bookmark.tick(), if request.bookmarks => {
                    let object = json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": {"resourceVersion": seen.to_string()}});
                    if sender.send(Ok(line("BOOKMARK", &object))).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ = &mut deadline => return,
            };
            match next {
                Ok(change) => {
                    if change.rv <= seen {
                        continue;
                    }
                    seen = seen.max(change.rv);
                    if change.resource != key
                        || request.namespace.as_deref().is_some_and(|ns| ns != change.namespace)
                    {
                        continue;
                    }
                    if let Some(event_type) = request.event_type(&change)
                        && sender.send(Ok(line(event_type, &change.object))).await.is_err()
                    {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let gone = ApiError::gone("the watch fell behind; relist");
                    let _ = sender.send(Ok(line("ERROR", &gone.status()))).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
