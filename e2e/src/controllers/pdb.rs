//! PodDisruptionBudget status, from the same figures the Eviction subresource uses.

use super::{info, list_all, name_of, namespace_of};
use crate::apiserver::eviction::budget;
use crate::apiserver::store::{Store, now_rfc3339};
use serde_json::{Value, json};

pub fn reconcile_all(store: &Store) {
    let Some(pdb_info) = info(store, "policy", "poddisruptionbudgets") else { return };
    for pdb in list_all(store, &pdb_info, None) {
        let (expected, healthy, desired, allowed) = budget(store, &pdb);
        let allowed_text = if allowed > 0 { "True" } else { "False" };
        let previous = pdb.pointer("/status/conditions/0");
        let since = match previous {
            Some(condition) if condition["status"] == allowed_text => {
                condition["lastTransitionTime"].clone()
            }
            _ => json!(now_rfc3339()),
        };
        let status = json!({
            "observedGeneration": pdb.pointer("/metadata/generation"),
            "expectedPods": expected,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "disruptionsAllowed": allowed,
            "conditions": [{
                "type": "DisruptionAllowed",
                "status": allowed_text,
                "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
                "message": "",
                "observedGeneration": pdb.pointer("/metadata/generation"),
                "lastTransitionTime": since,
            }],
        });
        if pdb.get("status") == Some(&status) {
            continue;
        }
        let result = store.update(
            &pdb_info,
            namespace_of(&pdb),
            name_of(&pdb),
            true,
            "disruption-controller",
            |current: &Value| {
                let mut next = current.clone();
                next["status"] = status;
                Ok(next)
            },
        );
        if let Err(error) = result {
            tracing::debug!(pdb = name_of(&pdb), %error, "pdb status write failed");
        }
    }
}
