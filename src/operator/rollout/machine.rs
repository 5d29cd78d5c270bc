//! The hot-update state machine of DESIGN.md section 5, as a pure function.
//!
//! [`next`] takes what is known now (the rollout state from status, the pods, the facts gathered
//! for the current step) and returns the state to persist, the actions to take, and the
//! `RollingUpdate` condition. The runner (`rollout::run`) executes the actions; an action that
//! *gathers a fact* ([`Action::RunChecklist`], [`Action::Evict`], [`Action::ProbeRestoredKeys`])
//! is always last, and the runner calls [`next`] again with its result.
//!
//! ```text
//!  (none) --outdated pod, all others Ready--> Draining --drained--> Checking --all pass--> Evicting
//!                                                |  timeout              | timeout             |
//!                                                v                       v                     | evicted
//!                                  Blocked (Block) / Evicting (Proceed)  Blocked <----429-------+
//!                                                                                              v
//!  (none) <--restored keys == snapshot keys (then the next pod, or Done)-------------- WaitingReady
//! ```
//!
//! Never evicting a pod twice: the UID is written to status (`evictedUid`) *before* the Eviction
//! call, and a pod is only evicted while it still has that UID and is not terminating; a pod with
//! another UID is the replacement, which is only waited for.

use crate::operator::crd::{ChecklistItem, OnTimeout, RolloutStatus};
use jiff::Timestamp;
use std::time::Duration;

/// Step names as stored in `status.rollout.step`.
pub mod step {
    pub const DRAINING: &str = "Draining";
    pub const CHECKING: &str = "Checking";
    pub const EVICTING: &str = "Evicting";
    pub const WAITING_READY: &str = "WaitingReady";
    pub const BLOCKED: &str = "Blocked";
}

/// `blockedOn` values that are not checklist items.
pub mod blocked_on {
    /// `POST /v1/drain` kept failing.
    pub const DRAIN: &str = "drain";
    /// The replacement pod's key count never matched the drained pod's snapshot.
    pub const RESTORED_KEYS: &str = "restored-keys";
    /// The eviction kept being refused (429) by the PodDisruptionBudget.
    pub const DISRUPTION_ALLOWED: &str = "disruption-allowed";
}

/// How often to look again while waiting.
pub const REQUEUE_WAITING: Duration = Duration::from_secs(2);
/// How often to re-run a failing checklist.
pub const REQUEUE_CHECKLIST: Duration = Duration::from_secs(5);

/// The rollout settings, parsed from the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub checklist_timeout: Duration,
    pub on_timeout: OnTimeout,
    pub allow_data_loss: bool,
    pub persistence_enabled: bool,
    /// spec.replicas: a rollout starts only when that many pods exist and are Ready.
    pub replicas: i32,
}

/// One pod as the machine sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub name: String,
    pub uid: String,
    pub ordinal: i32,
    pub ready: bool,
    /// `mapcache.io/revision` of the pod; `None` counts as outdated.
    pub revision: Option<String>,
    /// Has a deletionTimestamp.
    pub terminating: bool,
}

/// The checklist results for the current pod (runner: `RunChecklist`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChecklistFacts {
    /// Every item, passed or not, with evidence.
    pub items: Vec<ChecklistItem>,
    /// Keys in the node's verified snapshot, if it has one.
    pub snapshot_keys: Option<u64>,
}

impl ChecklistFacts {
    fn failing(&self) -> Vec<ChecklistItem> {
        self.items.iter().filter(|i| !i.passed).cloned().collect()
    }
}

/// What the Eviction API answered (runner: `Evict`).
#[derive(Clone, Debug, PartialEq)]
pub enum EvictionOutcome {
    /// 201: the pod is being deleted.
    Evicted,
    /// 429: the PodDisruptionBudget does not allow it now; the API's message.
    Refused(String),
    /// 404: already gone.
    Gone,
}

/// Everything [`next`] decides on.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub rollout: Option<&'a RolloutStatus>,
    pub pods: &'a [PodView],
    pub update_revision: &'a str,
    pub settings: &'a Settings,
    /// Facts gathered for the current step in this reconcile, if any.
    pub checklist: Option<&'a ChecklistFacts>,
    pub eviction: Option<&'a EvictionOutcome>,
    /// Why `POST /v1/drain` failed just now (runner: `Drain`).
    pub drain_error: Option<&'a str>,
    /// Live keys of the replacement pod (runner: `ProbeRestoredKeys`).
    pub restored_keys: Option<u64>,
    pub now: Timestamp,
}

/// Something the runner does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `POST /v1/drain` and label the pod `mapcache.io/draining=true`; on success persist `next`
    /// and call again; on failure call again with [`Input::drain_error`].
    Drain { pod: String },
    /// Gather the checklist; call again with [`Input::checklist`].
    RunChecklist { pod: String },
    /// Persist `next` first (it records the UID), then call the Eviction API; call again with
    /// [`Input::eviction`].
    Evict { pod: String, uid: String },
    /// Read the replacement pod's live key count; call again with [`Input::restored_keys`].
    ProbeRestoredKeys { pod: String },
    /// Warning Event per failing item (the rollout waits, or blocks).
    ReportFailures { pod: String, items: Vec<ChecklistItem> },
    /// The checklist timed out and `onTimeout: Proceed` deletes anyway: a loud Warning Event.
    ProceedDespite { pod: String, items: Vec<ChecklistItem> },
    /// Stopped; nothing is deleted. Warning Event naming the item and its evidence.
    Block { pod: String, item: String, evidence: String },
    /// The replacement pod is Ready on the new revision with every key back.
    PodReplaced { pod: String, restored_keys: Option<u64> },
    /// Every pod is on the update revision.
    Done,
    /// The rollout will not start: the reason, for a Warning Event.
    Refuse { message: String },
    /// Nothing to do now; look again after this long.
    Requeue(Duration),
}

/// The `RollingUpdate` condition to set.
#[derive(Clone, Debug, PartialEq)]
pub struct RollingUpdate {
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The result of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// `status.rollout` after the actions succeed.
    pub next: Option<RolloutStatus>,
    pub actions: Vec<Action>,
    pub condition: RollingUpdate,
}

/// Decides the next state and actions.
pub fn next(input: &Input<'_>) -> Transition {
    let Some(rollout) = input.rollout else {
        return start(input, false);
    };
    let Some(pod) = input.pods.iter().find(|p| p.name == rollout.pod) else {
        // The pod is gone (deleted by someone, or evicted and not yet recreated).
        return waiting_ready(input, rollout, None);
    };
    let replaced = rollout.evicted_uid.as_deref().is_some_and(|uid| uid != pod.uid)
        || (rollout.step != step::EVICTING
            && rollout.step != step::WAITING_READY
            && is_updated(input, pod));
    if replaced || rollout.step == step::WAITING_READY {
        return waiting_ready(input, rollout, Some(pod));
    }
    if pod.terminating {
        // Evicted (or deleted by hand); the replacement comes next.
        let next = RolloutStatus { step: step::WAITING_READY.into(), ..rollout.clone() };
        return waiting_ready(input, &next, Some(pod));
    }
    if let Some(refusal) = refuse_data_loss(input, rollout.step != step::EVICTING) {
        return refusal;
    }
    match rollout.step.as_str() {
        step::DRAINING => draining(input, rollout, pod),
        step::BLOCKED if rollout.blocked_on.as_deref() == Some(blocked_on::DRAIN) => {
            draining(input, rollout, pod)
        }
        step::CHECKING | step::BLOCKED => checking(input, rollout, pod),
        step::EVICTING => evicting(input, rollout, pod),
        _ => {
            // An unknown step (hand-edited status): start the pod's sequence over, safely.
            let next = RolloutStatus {
                step: step::DRAINING.into(),
                started_at: input.now.to_string(),
                blocked_on: None,
                ..rollout.clone()
            };
            draining(input, &next, pod)
        }
    }
}

fn is_updated(input: &Input<'_>, pod: &PodView) -> bool {
    pod.revision.as_deref() == Some(input.update_revision)
}

fn condition(status: bool, reason: &'static str, message: impl Into<String>) -> RollingUpdate {
    RollingUpdate { status, reason, message: message.into() }
}

/// Persistence off and data loss not allowed: a replaced pod would come back empty.
fn refuse_data_loss(input: &Input<'_>, applies: bool) -> Option<Transition> {
    if !applies || input.settings.persistence_enabled || input.settings.allow_data_loss {
        return None;
    }
    let message = "persistence is disabled and rollout.allowDataLoss is false: replacing a pod \
                   would lose its keys, so no pod is drained or deleted; enable persistence or set \
                   rollout.allowDataLoss: true";
    Some(Transition {
        next: None,
        actions: vec![Action::Refuse { message: message.into() }],
        condition: condition(false, "DataLossRefused", message),
    })
}

/// No rollout in progress: start one on the highest outdated ordinal, or report up to date.
fn start(input: &Input<'_>, finished_one: bool) -> Transition {
    let mut outdated: Vec<&PodView> = input.pods.iter().filter(|p| !is_updated(input, p)).collect();
    outdated.sort_by_key(|p| std::cmp::Reverse(p.ordinal));
    let Some(target) = outdated.first() else {
        let mut actions = Vec::new();
        if finished_one {
            actions.push(Action::Done);
        }
        let message = format!("all pods on revision {}", input.update_revision);
        return Transition {
            next: None,
            actions,
            condition: condition(false, "UpToDate", message),
        };
    };
    if let Some(refusal) = refuse_data_loss(input, true) {
        return refusal;
    }
    let present = input.pods.len() as i32;
    let unready: Vec<&str> = input
        .pods
        .iter()
        .filter(|p| p.name != target.name && (!p.ready || p.terminating))
        .map(|p| p.name.as_str())
        .collect();
    if !unready.is_empty() || present < input.settings.replicas {
        let message = if unready.is_empty() {
            format!(
                "{present} of {} pods exist; waiting before replacing {}",
                input.settings.replicas, target.name
            )
        } else {
            format!(
                "waiting for {} to be Ready before replacing {}",
                unready.join(", "),
                target.name
            )
        };
        return Transition {
            next: None,
            actions: vec![Action::Requeue(REQUEUE_WAITING)],
            condition: condition(true, "WaitingForReadyPods", message),
        };
    }
    let draining_state = RolloutStatus {
        pod: target.name.clone(),
        step: step::DRAINING.into(),
        started_at: input.now.to_string(),
        blocked_on: None,
        snapshot_keys: None,
        evicted_uid: None,
    };
    // The drain is the first action; on success the state moves on to Checking, on failure the
    // Draining state is what gets persisted.
    let mut transition = draining(input, &draining_state, target);
    if input.drain_error.is_none() {
        transition.condition.message =
            format!("{}: draining ({} outdated)", target.name, outdated.len());
    }
    transition
}

fn elapsed_since(started_at: &str, now: Timestamp) -> Duration {
    match started_at.parse::<Timestamp>() {
        Ok(start) => Duration::try_from(now.duration_since(start)).unwrap_or(Duration::ZERO),
        // Unparsable (hand-edited): count as just started rather than as timed out.
        Err(_) => Duration::ZERO,
    }
}

fn timed_out(input: &Input<'_>, rollout: &RolloutStatus) -> bool {
    rollout.step == step::BLOCKED
        || elapsed_since(&rollout.started_at, input.now) >= input.settings.checklist_timeout
}

fn draining(input: &Input<'_>, rollout: &RolloutStatus, pod: &PodView) -> Transition {
    let Some(error) = input.drain_error else {
        let next =
            RolloutStatus { step: step::CHECKING.into(), blocked_on: None, ..rollout.clone() };
        return Transition {
            next: Some(next),
            actions: vec![Action::Drain { pod: pod.name.clone() }],
            condition: condition(true, "Draining", format!("{}: draining", pod.name)),
        };
    };
    let failed = ChecklistItem {
        name: blocked_on::DRAIN.into(),
        passed: false,
        evidence: format!("POST /v1/drain failed: {error}"),
        checked_at: input.now.to_string(),
    };
    if !timed_out(input, rollout) {
        return Transition {
            next: Some(rollout.clone()),
            actions: vec![
                Action::ReportFailures { pod: pod.name.clone(), items: vec![failed.clone()] },
                Action::Requeue(REQUEUE_CHECKLIST),
            ],
            condition: condition(
                true,
                "Draining",
                format!("{}: {}; retrying", pod.name, failed.evidence),
            ),
        };
    }
    match input.settings.on_timeout {
        OnTimeout::Block => Transition {
            next: Some(RolloutStatus {
                step: step::BLOCKED.into(),
                blocked_on: Some(blocked_on::DRAIN.into()),
                ..rollout.clone()
            }),
            actions: vec![
                Action::Block {
                    pod: pod.name.clone(),
                    item: failed.name.clone(),
                    evidence: failed.evidence.clone(),
                },
                Action::Requeue(REQUEUE_CHECKLIST),
            ],
            condition: condition(
                false,
                "ChecklistTimeout",
                format!("{}: blocked on drain: {}; nothing was deleted", pod.name, failed.evidence),
            ),
        },
        OnTimeout::Proceed => Transition {
            next: Some(RolloutStatus {
                step: step::EVICTING.into(),
                blocked_on: None,
                snapshot_keys: None,
                evicted_uid: Some(pod.uid.clone()),
                ..rollout.clone()
            }),
            actions: vec![
                Action::ProceedDespite { pod: pod.name.clone(), items: vec![failed.clone()] },
                Action::Evict { pod: pod.name.clone(), uid: pod.uid.clone() },
            ],
            condition: condition(
                true,
                "ProceedingDespiteChecklist",
                format!(
                    "{}: checklistTimeout passed with drain failing; onTimeout is Proceed, evicting anyway",
                    pod.name
                ),
            ),
        },
    }
}

fn checking(input: &Input<'_>, rollout: &RolloutStatus, pod: &PodView) -> Transition {
    let Some(facts) = input.checklist else {
        return Transition {
            next: Some(rollout.clone()),
            actions: vec![Action::RunChecklist { pod: pod.name.clone() }],
            condition: condition(true, "Checking", format!("{}: running the checklist", pod.name)),
        };
    };
    let failing = facts.failing();
    let evicting = RolloutStatus {
        step: step::EVICTING.into(),
        blocked_on: None,
        snapshot_keys: facts.snapshot_keys,
        evicted_uid: Some(pod.uid.clone()),
        ..rollout.clone()
    };
    let evict = Action::Evict { pod: pod.name.clone(), uid: pod.uid.clone() };
    let Some(first) = failing.first() else {
        return Transition {
            next: Some(evicting),
            actions: vec![evict],
            condition: condition(
                true,
                "Evicting",
                format!("{}: checklist passed; evicting", pod.name),
            ),
        };
    };
    let names: Vec<&str> = failing.iter().map(|i| i.name.as_str()).collect();
    if !timed_out(input, rollout) {
        return Transition {
            next: Some(RolloutStatus { step: step::CHECKING.into(), ..rollout.clone() }),
            actions: vec![
                Action::ReportFailures { pod: pod.name.clone(), items: failing.clone() },
                Action::Requeue(REQUEUE_CHECKLIST),
            ],
            condition: condition(
                true,
                "Checking",
                format!("{}: waiting for {} ({})", pod.name, names.join(", "), first.evidence),
            ),
        };
    }
    match input.settings.on_timeout {
        OnTimeout::Block => Transition {
            next: Some(RolloutStatus {
                step: step::BLOCKED.into(),
                blocked_on: Some(first.name.clone()),
                ..rollout.clone()
            }),
            actions: vec![
                Action::Block {
                    pod: pod.name.clone(),
                    item: first.name.clone(),
                    evidence: first.evidence.clone(),
                },
                Action::Requeue(REQUEUE_CHECKLIST),
            ],
            condition: condition(
                false,
                "ChecklistTimeout",
                format!(
                    "{}: blocked on {}: {}; nothing was deleted",
                    pod.name, first.name, first.evidence
                ),
            ),
        },
        OnTimeout::Proceed => Transition {
            next: Some(evicting),
            actions: vec![
                Action::ProceedDespite { pod: pod.name.clone(), items: failing.clone() },
                evict,
            ],
            condition: condition(
                true,
                "ProceedingDespiteChecklist",
                format!(
                    "{}: checklistTimeout passed with {} failing; onTimeout is Proceed, evicting anyway",
                    pod.name,
                    names.join(", ")
                ),
            ),
        },
    }
}

fn evicting(input: &Input<'_>, rollout: &RolloutStatus, pod: &PodView) -> Transition {
    let waiting = RolloutStatus {
        step: step::WAITING_READY.into(),
        started_at: input.now.to_string(),
        blocked_on: None,
        ..rollout.clone()
    };
    let to_waiting = |message: String| Transition {
        next: Some(waiting.clone()),
        actions: vec![Action::Requeue(REQUEUE_WAITING)],
        condition: condition(true, "WaitingReady", message),
    };
    match input.eviction {
        None => Transition {
            next: Some(rollout.clone()),
            actions: vec![Action::Evict { pod: pod.name.clone(), uid: pod.uid.clone() }],
            condition: condition(true, "Evicting", format!("{}: evicting", pod.name)),
        },
        Some(EvictionOutcome::Evicted) => {
            to_waiting(format!("{}: evicted; waiting for the replacement", pod.name))
        }
        Some(EvictionOutcome::Gone) => {
            to_waiting(format!("{}: already gone; waiting for the replacement", pod.name))
        }
        Some(EvictionOutcome::Refused(message)) => {
            let item = blocked_on::DISRUPTION_ALLOWED;
            // onTimeout: Proceed overrides the node's checklist items, never the PDB.
            if elapsed_since(&rollout.started_at, input.now) >= input.settings.checklist_timeout {
                Transition {
                    next: Some(RolloutStatus { blocked_on: Some(item.into()), ..rollout.clone() }),
                    actions: vec![
                        Action::Block {
                            pod: pod.name.clone(),
                            item: item.into(),
                            evidence: message.clone(),
                        },
                        Action::Requeue(REQUEUE_CHECKLIST),
                    ],
                    condition: condition(
                        false,
                        "ChecklistTimeout",
                        format!("{}: blocked on {item}: {message}; nothing was deleted", pod.name),
                    ),
                }
            } else {
                Transition {
                    next: Some(rollout.clone()),
                    actions: vec![Action::Requeue(REQUEUE_CHECKLIST)],
                    condition: condition(
                        true,
                        "Evicting",
                        format!(
                            "{}: eviction refused by the PodDisruptionBudget ({message}); retrying",
                            pod.name
                        ),
                    ),
                }
            }
        }
    }
}

fn waiting_ready(input: &Input<'_>, rollout: &RolloutStatus, pod: Option<&PodView>) -> Transition {
    let next = RolloutStatus { step: step::WAITING_READY.into(), ..rollout.clone() };
    let wait = |message: String| Transition {
        next: Some(next.clone()),
        actions: vec![Action::Requeue(REQUEUE_WAITING)],
        condition: condition(true, "WaitingReady", message),
    };
    let Some(pod) = pod else {
        return wait(format!("{}: waiting for the replacement pod", rollout.pod));
    };
    if rollout.evicted_uid.as_deref() == Some(pod.uid.as_str()) || pod.terminating {
        return wait(format!("{}: waiting for the old pod to terminate", pod.name));
    }
    if !is_updated(input, pod) {
        return wait(format!(
            "{}: replacement is on revision {}, waiting for {}",
            pod.name,
            pod.revision.as_deref().unwrap_or("<none>"),
            input.update_revision
        ));
    }
    if !pod.ready {
        return wait(format!("{}: waiting for the replacement to be Ready", pod.name));
    }
    let check_keys = rollout.snapshot_keys.filter(|_| !input.settings.allow_data_loss);
    if let Some(expected) = check_keys {
        let Some(restored) = input.restored_keys else {
            return Transition {
                next: Some(next.clone()),
                actions: vec![Action::ProbeRestoredKeys { pod: pod.name.clone() }],
                condition: condition(
                    true,
                    "WaitingReady",
                    format!("{}: checking restored keys", pod.name),
                ),
            };
        };
        if restored != expected {
            let evidence =
                format!("restored {restored} keys, the drained pod's snapshot had {expected}");
            if elapsed_since(&rollout.started_at, input.now) >= input.settings.checklist_timeout {
                return Transition {
                    next: Some(RolloutStatus {
                        blocked_on: Some(blocked_on::RESTORED_KEYS.into()),
                        ..next.clone()
                    }),
                    actions: vec![
                        Action::Block {
                            pod: pod.name.clone(),
                            item: blocked_on::RESTORED_KEYS.into(),
                            evidence: evidence.clone(),
                        },
                        Action::Requeue(REQUEUE_CHECKLIST),
                    ],
                    condition: condition(
                        false,
                        "RestoreMismatch",
                        format!(
                            "{}: blocked on {}: {evidence}",
                            pod.name,
                            blocked_on::RESTORED_KEYS
                        ),
                    ),
                };
            }
            return wait(format!("{}: {evidence}", pod.name));
        }
    }
    // This pod is done; go on with the next one (or finish) in the same decision.
    let mut transition = start(input, true);
    transition.actions.insert(
        0,
        Action::PodReplaced { pod: pod.name.clone(), restored_keys: input.restored_keys },
    );
    transition
}

#[cfg(test)]
mod tests;
