//! A test per transition, the timeouts, and restart/resume (never evicting a pod twice).

use super::*;

const OLD: &str = "rev-old";
const NEW: &str = "rev-new";

fn now() -> Timestamp {
    "2026-11-22T03:00:00Z".parse().expect("timestamp")
}

fn seconds_ago(seconds: i64) -> String {
    (now() - jiff::SignedDuration::from_secs(seconds)).to_string()
}

fn settings() -> Settings {
    Settings {
        checklist_timeout: Duration::from_secs(300),
        on_timeout: OnTimeout::Block,
        allow_data_loss: false,
        persistence_enabled: true,
        replicas: 3,
    }
}

fn pod(ordinal: i32, revision: &str) -> PodView {
    PodView {
        name: format!("mc-{ordinal}"),
        uid: format!("uid-{ordinal}-{revision}"),
        ordinal,
        ready: true,
        revision: Some(revision.into()),
        terminating: false,
    }
}

fn pods(revisions: [&str; 3]) -> Vec<PodView> {
    revisions.iter().enumerate().map(|(i, r)| pod(i as i32, r)).collect()
}

fn rollout(pod: &str, step: &str, started_seconds_ago: i64) -> RolloutStatus {
    RolloutStatus {
        pod: pod.into(),
        step: step.into(),
        started_at: seconds_ago(started_seconds_ago),
        blocked_on: None,
        snapshot_keys: None,
        evicted_uid: None,
    }
}

fn item(name: &str, passed: bool, evidence: &str) -> ChecklistItem {
    ChecklistItem {
        name: name.into(),
        passed,
        evidence: evidence.into(),
        checked_at: now().to_string(),
    }
}

fn passing_checklist() -> ChecklistFacts {
    let names = [
        "deregistered",
        "no-inflight",
        "no-lock-waiters",
        "cross-checked",
        "maintenance-idle",
        "snapshot-verified",
    ];
    ChecklistFacts {
        items: names.iter().map(|n| item(n, true, "ok")).collect(),
        snapshot_keys: Some(1000),
    }
}

fn failing_checklist() -> ChecklistFacts {
    let mut facts = passing_checklist();
    facts.items[1] = item("no-inflight", false, "1 in-flight request (task 7: BLPOP)");
    facts.items[2] = item("no-lock-waiters", false, "2 waiters on shard 3");
    facts
}

struct Case<'a> {
    rollout: Option<&'a RolloutStatus>,
    pods: &'a [PodView],
    settings: Settings,
    checklist: Option<&'a ChecklistFacts>,
    eviction: Option<&'a EvictionOutcome>,
    drain_error: Option<&'a str>,
    restored_keys: Option<u64>,
}

impl<'a> Case<'a> {
    fn new(rollout: Option<&'a RolloutStatus>, pods: &'a [PodView]) -> Self {
        Self {
            rollout,
            pods,
            settings: settings(),
            checklist: None,
            eviction: None,
            drain_error: None,
            restored_keys: None,
        }
    }

    fn run(&self) -> Transition {
        next(&Input {
            rollout: self.rollout,
            pods: self.pods,
            update_revision: NEW,
            settings: &self.settings,
            checklist: self.checklist,
            eviction: self.eviction,
            drain_error: self.drain_error,
            restored_keys: self.restored_keys,
            now: now(),
        })
    }
}

fn has_evict(transition: &Transition) -> bool {
    transition.actions.iter().any(|a| matches!(a, Action::Evict { .. }))
}

// ---- start ----

#[test]
fn all_pods_updated_means_no_rollout() {
    let pods = pods([NEW, NEW, NEW]);
    let t = Case::new(None, &pods).run();
    assert_eq!(t.next, None);
    assert_eq!(t.actions, []);
    assert_eq!(t.condition, condition(false, "UpToDate", "all pods on revision rev-new"));
}

#[test]
fn starts_with_the_highest_outdated_ordinal() {
    let pods = pods([OLD, OLD, OLD]);
    let t = Case::new(None, &pods).run();
    // Persisted once the drain succeeded: the next step is the checklist.
    assert_eq!(t.next, Some(rollout("mc-2", step::CHECKING, 0)));
    assert_eq!(t.actions, [Action::Drain { pod: "mc-2".into() }]);
    assert_eq!(t.condition, condition(true, "Draining", "mc-2: draining (3 outdated)"));
}

#[test]
fn a_first_drain_that_fails_persists_the_draining_state() {
    let pods = pods([OLD, OLD, OLD]);
    let mut case = Case::new(None, &pods);
    case.drain_error = Some("connection refused");
    let t = case.run();
    assert_eq!(t.next, Some(rollout("mc-2", step::DRAINING, 0)));
    assert!(!t.actions.iter().any(|a| matches!(a, Action::Drain { .. })));
    assert_eq!(t.actions.last(), Some(&Action::Requeue(REQUEUE_CHECKLIST)));
}

#[test]
fn skips_updated_pods_when_choosing() {
    let pods = pods([OLD, OLD, NEW]);
    let t = Case::new(None, &pods).run();
    assert_eq!(t.next.map(|r| r.pod), Some("mc-1".to_string()));
}

#[test]
fn pod_without_revision_counts_as_outdated() {
    let mut pods = pods([NEW, NEW, NEW]);
    pods[0].revision = None;
    let t = Case::new(None, &pods).run();
    assert_eq!(t.actions, [Action::Drain { pod: "mc-0".into() }]);
}

#[test]
fn waits_while_another_pod_is_not_ready() {
    let mut pods = pods([OLD, OLD, OLD]);
    pods[0].ready = false;
    let t = Case::new(None, &pods).run();
    assert_eq!(t.next, None);
    assert_eq!(t.actions, [Action::Requeue(REQUEUE_WAITING)]);
    assert_eq!(
        t.condition,
        condition(
            true,
            "WaitingForReadyPods",
            "waiting for mc-0 to be Ready before replacing mc-2"
        )
    );
}

#[test]
fn waits_while_another_pod_is_terminating() {
    let mut pods = pods([OLD, OLD, OLD]);
    pods[1].terminating = true;
    let t = Case::new(None, &pods).run();
    assert_eq!(t.next, None);
    assert_eq!(t.condition.reason, "WaitingForReadyPods");
}

#[test]
fn waits_while_fewer_pods_than_replicas_exist() {
    let pods: Vec<PodView> = pods([OLD, OLD, OLD]).into_iter().take(2).collect();
    let t = Case::new(None, &pods).run();
    assert_eq!(t.next, None);
    assert_eq!(
        t.condition,
        condition(true, "WaitingForReadyPods", "2 of 3 pods exist; waiting before replacing mc-1")
    );
}

#[test]
fn an_unready_target_is_still_replaced_when_the_others_are_ready() {
    let mut pods = pods([OLD, OLD, OLD]);
    pods[2].ready = false;
    let t = Case::new(None, &pods).run();
    assert_eq!(t.actions, [Action::Drain { pod: "mc-2".into() }]);
}

#[test]
fn persistence_off_without_allow_data_loss_refuses_and_touches_nothing() {
    let pods = pods([OLD, OLD, OLD]);
    let mut case = Case::new(None, &pods);
    case.settings.persistence_enabled = false;
    let t = case.run();
    assert_eq!(t.next, None);
    assert_eq!(t.actions.len(), 1);
    assert!(
        matches!(&t.actions[0], Action::Refuse { message } if message.contains("allowDataLoss"))
    );
    assert!(!t.condition.status);
    assert_eq!(t.condition.reason, "DataLossRefused");
    assert!(
        t.condition
            .message
            .starts_with("persistence is disabled and rollout.allowDataLoss is false")
    );
}

#[test]
fn persistence_off_with_allow_data_loss_rolls() {
    let pods = pods([OLD, OLD, OLD]);
    let mut case = Case::new(None, &pods);
    case.settings.persistence_enabled = false;
    case.settings.allow_data_loss = true;
    assert_eq!(case.run().actions, [Action::Drain { pod: "mc-2".into() }]);
}

#[test]
fn persistence_off_refuses_a_started_rollout_before_eviction() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::CHECKING, 10);
    let mut case = Case::new(Some(&state), &pods);
    case.settings.persistence_enabled = false;
    let checklist = passing_checklist();
    case.checklist = Some(&checklist);
    let t = case.run();
    assert_eq!(t.next, None);
    assert!(!has_evict(&t));
    assert_eq!(t.condition.reason, "DataLossRefused");
}

// ---- draining ----

#[test]
fn draining_drains_then_moves_to_checking() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::DRAINING, 0);
    let t = Case::new(Some(&state), &pods).run();
    assert_eq!(t.next, Some(rollout("mc-2", step::CHECKING, 0)));
    assert_eq!(t.actions, [Action::Drain { pod: "mc-2".into() }]);
}

#[test]
fn drain_failure_within_the_timeout_retries() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::DRAINING, 10);
    let mut case = Case::new(Some(&state), &pods);
    case.drain_error = Some("connection refused");
    let t = case.run();
    assert_eq!(t.next, Some(state.clone()));
    assert_eq!(
        t.actions,
        [
            Action::ReportFailures {
                pod: "mc-2".into(),
                items: vec![item("drain", false, "POST /v1/drain failed: connection refused")]
            },
            Action::Requeue(REQUEUE_CHECKLIST)
        ]
    );
    assert!(t.condition.status);
}

#[test]
fn drain_failure_past_the_timeout_blocks() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::DRAINING, 300);
    let mut case = Case::new(Some(&state), &pods);
    case.drain_error = Some("connection refused");
    let t = case.run();
    let blocked = RolloutStatus {
        step: step::BLOCKED.into(),
        blocked_on: Some("drain".into()),
        ..state.clone()
    };
    assert_eq!(t.next, Some(blocked));
    assert!(!has_evict(&t));
    assert_eq!(
        t.condition,
        condition(
            false,
            "ChecklistTimeout",
            "mc-2: blocked on drain: POST /v1/drain failed: connection refused; nothing was deleted"
        )
    );
}

#[test]
fn drain_failure_past_the_timeout_with_proceed_evicts_loudly() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::DRAINING, 300);
    let mut case = Case::new(Some(&state), &pods);
    case.settings.on_timeout = OnTimeout::Proceed;
    case.drain_error = Some("timeout");
    let t = case.run();
    let next = t.next.clone().expect("state");
    assert_eq!(next.step, step::EVICTING);
    assert_eq!(next.evicted_uid.as_deref(), Some("uid-2-rev-old"));
    assert!(matches!(&t.actions[0], Action::ProceedDespite { pod, .. } if pod == "mc-2"));
    assert_eq!(t.actions[1], Action::Evict { pod: "mc-2".into(), uid: "uid-2-rev-old".into() });
    assert_eq!(t.condition.reason, "ProceedingDespiteChecklist");
}

#[test]
fn blocked_on_drain_tries_the_drain_again() {
    let pods = pods([OLD, OLD, OLD]);
    let state =
        RolloutStatus { blocked_on: Some("drain".into()), ..rollout("mc-2", step::BLOCKED, 400) };
    let t = Case::new(Some(&state), &pods).run();
    assert_eq!(t.actions, [Action::Drain { pod: "mc-2".into() }]);
    let next = t.next.expect("state");
    assert_eq!((next.step.as_str(), next.blocked_on), (step::CHECKING, None));
}

// ---- checking ----

#[test]
fn checking_without_results_asks_for_the_checklist() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::CHECKING, 1);
    let t = Case::new(Some(&state), &pods).run();
    assert_eq!(t.next, Some(state.clone()));
    assert_eq!(t.actions, [Action::RunChecklist { pod: "mc-2".into() }]);
}

#[test]
fn passing_checklist_records_uid_and_snapshot_then_evicts() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::CHECKING, 1);
    let checklist = passing_checklist();
    let mut case = Case::new(Some(&state), &pods);
    case.checklist = Some(&checklist);
    let t = case.run();
    let expected = RolloutStatus {
        step: step::EVICTING.into(),
        snapshot_keys: Some(1000),
        evicted_uid: Some("uid-2-rev-old".into()),
        ..state.clone()
    };
    assert_eq!(t.next, Some(expected));
    assert_eq!(t.actions, [Action::Evict { pod: "mc-2".into(), uid: "uid-2-rev-old".into() }]);
    assert_eq!(t.condition, condition(true, "Evicting", "mc-2: checklist passed; evicting"));
}

#[test]
fn failing_checklist_within_the_timeout_waits_and_reports() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::CHECKING, 299);
    let checklist = failing_checklist();
    let mut case = Case::new(Some(&state), &pods);
    case.checklist = Some(&checklist);
    let t = case.run();
    assert_eq!(t.next, Some(state.clone()));
    assert!(!has_evict(&t));
    assert_eq!(
        t.actions,
        [
            Action::ReportFailures {
                pod: "mc-2".into(),
                items: vec![checklist.items[1].clone(), checklist.items[2].clone()]
            },
            Action::Requeue(REQUEUE_CHECKLIST)
        ]
    );
    assert_eq!(
        t.condition,
        condition(
            true,
            "Checking",
            "mc-2: waiting for no-inflight, no-lock-waiters (1 in-flight request (task 7: BLPOP))"
        )
    );
}

#[test]
fn failing_checklist_past_the_timeout_blocks_and_deletes_nothing() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::CHECKING, 300);
    let checklist = failing_checklist();
    let mut case = Case::new(Some(&state), &pods);
    case.checklist = Some(&checklist);
    let t = case.run();
    let blocked = RolloutStatus {
        step: step::BLOCKED.into(),
        blocked_on: Some("no-inflight".into()),
        ..state.clone()
    };
    assert_eq!(t.next, Some(blocked));
    assert!(!has_evict(&t));
    assert_eq!(
        t.actions[0],
        Action::Block {
            pod: "mc-2".into(),
            item: "no-inflight".into(),
            evidence: "1 in-flight request (task 7: BLPOP)".into()
        }
    );
    assert_eq!(
        t.condition,
        condition(
            false,
            "ChecklistTimeout",
            "mc-2: blocked on no-inflight: 1 in-flight request (task 7: BLPOP); nothing was deleted"
        )
    );
}

#[test]
fn failing_checklist_past_the_timeout_with_proceed_evicts_and_says_so() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", step::CHECKING, 300);
    let checklist = failing_checklist();
    let mut case = Case::new(Some(&state), &pods);
    case.settings.on_timeout = OnTimeout::Proceed;
    case.checklist = Some(&checklist);
    let t = case.run();
    assert_eq!(t.next.as_ref().map(|r| r.step.as_str()), Some(step::EVICTING));
    assert_eq!(t.next.as_ref().and_then(|r| r.evicted_uid.as_deref()), Some("uid-2-rev-old"));
    assert_eq!(
        t.actions,
        [
            Action::ProceedDespite {
                pod: "mc-2".into(),
                items: vec![checklist.items[1].clone(), checklist.items[2].clone()]
            },
            Action::Evict { pod: "mc-2".into(), uid: "uid-2-rev-old".into() }
        ]
    );
    assert_eq!(
        t.condition.message,
        "mc-2: checklistTimeout passed with no-inflight, no-lock-waiters failing; onTimeout is Proceed, evicting anyway"
    );
}

#[test]
fn blocked_rollout_proceeds_once_the_checklist_passes() {
    let pods = pods([OLD, OLD, OLD]);
    let state = RolloutStatus {
        blocked_on: Some("no-inflight".into()),
        ..rollout("mc-2", step::BLOCKED, 900)
    };
    let checklist = passing_checklist();
    let mut case = Case::new(Some(&state), &pods);
    case.checklist = Some(&checklist);
    let t = case.run();
    let next = t.next.clone().expect("state");
    assert_eq!((next.step.as_str(), next.blocked_on), (step::EVICTING, None));
    assert!(has_evict(&t));
}

#[test]
fn blocked_rollout_stays_blocked_while_the_checklist_fails() {
    let pods = pods([OLD, OLD, OLD]);
    let state = RolloutStatus {
        blocked_on: Some("no-inflight".into()),
        ..rollout("mc-2", step::BLOCKED, 10)
    };
    let checklist = failing_checklist();
    let mut case = Case::new(Some(&state), &pods);
    case.checklist = Some(&checklist);
    let t = case.run();
    assert_eq!(t.next, Some(state.clone()));
    assert!(!has_evict(&t));
    assert!(!t.condition.status);
}

// ---- evicting ----

fn evicting_state() -> RolloutStatus {
    RolloutStatus {
        snapshot_keys: Some(1000),
        evicted_uid: Some("uid-2-rev-old".into()),
        ..rollout("mc-2", step::EVICTING, 30)
    }
}

#[test]
fn resumed_evicting_step_evicts_the_same_uid_while_the_pod_is_still_there() {
    let pods = pods([OLD, OLD, OLD]);
    let state = evicting_state();
    let t = Case::new(Some(&state), &pods).run();
    assert_eq!(t.next, Some(state.clone()));
    assert_eq!(t.actions, [Action::Evict { pod: "mc-2".into(), uid: "uid-2-rev-old".into() }]);
}

#[test]
fn evicted_moves_to_waiting_ready_and_restarts_the_clock() {
    let pods = pods([OLD, OLD, OLD]);
    let state = evicting_state();
    let mut case = Case::new(Some(&state), &pods);
    case.eviction = Some(&EvictionOutcome::Evicted);
    let t = case.run();
    let expected = RolloutStatus {
        step: step::WAITING_READY.into(),
        started_at: now().to_string(),
        ..state.clone()
    };
    assert_eq!(t.next, Some(expected));
    assert_eq!(t.actions, [Action::Requeue(REQUEUE_WAITING)]);
}

#[test]
fn eviction_of_a_gone_pod_moves_to_waiting_ready() {
    let pods = pods([OLD, OLD, OLD]);
    let state = evicting_state();
    let mut case = Case::new(Some(&state), &pods);
    case.eviction = Some(&EvictionOutcome::Gone);
    assert_eq!(case.run().next.map(|r| r.step), Some(step::WAITING_READY.to_string()));
}

#[test]
fn eviction_refused_by_the_pdb_retries_within_the_timeout() {
    let pods = pods([OLD, OLD, OLD]);
    let state = evicting_state();
    let refused = EvictionOutcome::Refused(
        "Cannot evict pod as it would violate the pod's disruption budget.".into(),
    );
    let mut case = Case::new(Some(&state), &pods);
    case.eviction = Some(&refused);
    let t = case.run();
    assert_eq!(t.next, Some(state.clone()));
    assert_eq!(t.actions, [Action::Requeue(REQUEUE_CHECKLIST)]);
    assert!(t.condition.status);
}

#[test]
fn eviction_refused_past_the_timeout_blocks_even_with_proceed() {
    let pods = pods([OLD, OLD, OLD]);
    let state = RolloutStatus { started_at: seconds_ago(600), ..evicting_state() };
    let refused = EvictionOutcome::Refused("would violate the disruption budget".into());
    let mut case = Case::new(Some(&state), &pods);
    case.settings.on_timeout = OnTimeout::Proceed;
    case.eviction = Some(&refused);
    let t = case.run();
    assert_eq!(t.next.as_ref().and_then(|r| r.blocked_on.as_deref()), Some("disruption-allowed"));
    assert_eq!(
        t.condition,
        condition(
            false,
            "ChecklistTimeout",
            "mc-2: blocked on disruption-allowed: would violate the disruption budget; nothing was deleted"
        )
    );
}

// ---- restart / resume ----

#[test]
fn restart_after_eviction_with_the_pod_terminating_never_evicts_again() {
    let mut pods = pods([OLD, OLD, OLD]);
    pods[2].terminating = true;
    let state = evicting_state();
    let t = Case::new(Some(&state), &pods).run();
    assert!(!has_evict(&t));
    assert_eq!(t.next.map(|r| r.step), Some(step::WAITING_READY.to_string()));
    assert_eq!(t.condition.message, "mc-2: waiting for the old pod to terminate");
}

#[test]
fn restart_after_eviction_with_the_pod_gone_waits_for_the_replacement() {
    let pods: Vec<PodView> = pods([OLD, OLD, OLD]).into_iter().take(2).collect();
    let state = evicting_state();
    let t = Case::new(Some(&state), &pods).run();
    assert!(!has_evict(&t));
    assert_eq!(t.condition.message, "mc-2: waiting for the replacement pod");
}

#[test]
fn restart_after_eviction_with_an_unready_replacement_never_evicts_it() {
    let mut pods = pods([OLD, OLD, NEW]);
    pods[2].ready = false;
    let state = evicting_state();
    let t = Case::new(Some(&state), &pods).run();
    assert!(!has_evict(&t));
    assert_eq!(t.next.map(|r| r.step), Some(step::WAITING_READY.to_string()));
    assert_eq!(t.condition.message, "mc-2: waiting for the replacement to be Ready");
}

// ---- waiting ready ----

fn waiting_state() -> RolloutStatus {
    RolloutStatus { step: step::WAITING_READY.into(), ..evicting_state() }
}

#[test]
fn replacement_on_the_old_revision_is_waited_for() {
    let mut pods = pods([OLD, OLD, OLD]);
    pods[2].uid = "uid-2-second".into();
    let state = waiting_state();
    let t = Case::new(Some(&state), &pods).run();
    assert!(!has_evict(&t));
    assert_eq!(
        t.condition.message,
        "mc-2: replacement is on revision rev-old, waiting for rev-new"
    );
}

#[test]
fn ready_replacement_has_its_restored_keys_probed() {
    let pods = pods([OLD, OLD, NEW]);
    let state = waiting_state();
    let t = Case::new(Some(&state), &pods).run();
    assert_eq!(t.actions, [Action::ProbeRestoredKeys { pod: "mc-2".into() }]);
    assert_eq!(t.next, Some(state.clone()));
}

#[test]
fn restored_keys_equal_goes_on_to_the_next_pod() {
    let pods = pods([OLD, OLD, NEW]);
    let state = waiting_state();
    let mut case = Case::new(Some(&state), &pods);
    case.restored_keys = Some(1000);
    let t = case.run();
    assert_eq!(
        t.actions,
        [
            Action::PodReplaced { pod: "mc-2".into(), restored_keys: Some(1000) },
            Action::Drain { pod: "mc-1".into() }
        ]
    );
    assert_eq!(t.next, Some(rollout("mc-1", step::CHECKING, 0)));
}

#[test]
fn last_pod_replaced_finishes_the_rollout() {
    let pods = pods([NEW, NEW, NEW]);
    let state = RolloutStatus {
        pod: "mc-0".into(),
        evicted_uid: Some("uid-0-rev-old".into()),
        ..waiting_state()
    };
    let mut case = Case::new(Some(&state), &pods);
    case.restored_keys = Some(1000);
    let t = case.run();
    assert_eq!(t.next, None);
    assert_eq!(
        t.actions,
        [Action::PodReplaced { pod: "mc-0".into(), restored_keys: Some(1000) }, Action::Done]
    );
    assert_eq!(t.condition, condition(false, "UpToDate", "all pods on revision rev-new"));
}

#[test]
fn restored_key_mismatch_waits_then_blocks_past_the_timeout() {
    let pods = pods([OLD, OLD, NEW]);
    let state = waiting_state();
    let mut case = Case::new(Some(&state), &pods);
    case.restored_keys = Some(990);
    let t = case.run();
    assert_eq!(t.next, Some(state.clone()));
    assert_eq!(t.condition.message, "mc-2: restored 990 keys, the drained pod's snapshot had 1000");

    let late = RolloutStatus { started_at: seconds_ago(301), ..waiting_state() };
    let mut case = Case::new(Some(&late), &pods);
    case.restored_keys = Some(990);
    let t = case.run();
    assert_eq!(t.next.as_ref().and_then(|r| r.blocked_on.as_deref()), Some("restored-keys"));
    assert_eq!(t.condition.reason, "RestoreMismatch");
    assert!(!t.actions.iter().any(|a| matches!(a, Action::Drain { .. })));
}

#[test]
fn allow_data_loss_skips_the_restored_key_check() {
    let pods = pods([OLD, OLD, NEW]);
    let state = waiting_state();
    let mut case = Case::new(Some(&state), &pods);
    case.settings.allow_data_loss = true;
    let t = case.run();
    assert_eq!(t.actions[0], Action::PodReplaced { pod: "mc-2".into(), restored_keys: None });
}

#[test]
fn pod_replaced_by_hand_during_checking_is_waited_for_not_evicted() {
    let pods = pods([OLD, OLD, NEW]);
    let state = rollout("mc-2", step::CHECKING, 5);
    let checklist = passing_checklist();
    let mut case = Case::new(Some(&state), &pods);
    case.checklist = Some(&checklist);
    let t = case.run();
    assert!(!has_evict(&t));
    assert_eq!(t.actions[0], Action::PodReplaced { pod: "mc-2".into(), restored_keys: None });
}

#[test]
fn unknown_step_restarts_the_pod_sequence_with_a_drain() {
    let pods = pods([OLD, OLD, OLD]);
    let state = rollout("mc-2", "Exploding", 5);
    let t = Case::new(Some(&state), &pods).run();
    assert_eq!(t.actions, [Action::Drain { pod: "mc-2".into() }]);
    assert_eq!(
        t.next.map(|r| (r.step, r.started_at)),
        Some((step::CHECKING.into(), now().to_string()))
    );
}

/// Drives a whole 3-pod rollout against a simulated cluster, crashing the operator (dropping
/// everything not persisted) after the `crash_at`-th action, and checks each pod is evicted once.
fn simulate(crash_at: Option<usize>) -> (Vec<String>, Vec<PodView>) {
    let mut pods = pods([OLD, OLD, OLD]);
    let mut persisted: Option<RolloutStatus> = None;
    let mut evicted: Vec<String> = Vec::new();
    let mut executed = 0usize;
    let mut generation = 0;
    let settings = settings();
    for _reconcile in 0..100 {
        // The cluster moves between reconciles: terminating pods are replaced, new pods get Ready.
        for pod in pods.iter_mut() {
            if pod.terminating {
                generation += 1;
                *pod = PodView {
                    uid: format!("uid-{}-new-{generation}", pod.ordinal),
                    revision: Some(NEW.into()),
                    ready: false,
                    terminating: false,
                    ..pod.clone()
                };
            } else if !pod.ready {
                pod.ready = true;
            }
        }
        let mut checklist = None;
        let mut eviction = None;
        let mut restored = None;
        let mut crashed = false;
        for _call in 0..10 {
            let t = next(&Input {
                rollout: persisted.as_ref(),
                pods: &pods,
                update_revision: NEW,
                settings: &settings,
                checklist: checklist.as_ref(),
                eviction: eviction.as_ref(),
                drain_error: None,
                restored_keys: restored,
                now: now(),
            });
            let mut call_again = false;
            for action in &t.actions {
                executed += 1;
                match action {
                    Action::Drain { .. } => {
                        persisted = t.next.clone();
                        checklist = None;
                        call_again = true;
                    }
                    Action::RunChecklist { .. } => {
                        checklist = Some(passing_checklist());
                        call_again = true;
                    }
                    Action::Evict { uid, .. } => {
                        persisted = t.next.clone(); // intent first
                        let pod =
                            pods.iter_mut().find(|p| &p.uid == uid).expect("evicts a live pod");
                        assert!(!pod.terminating, "evicted a terminating pod {uid}");
                        assert!(!evicted.contains(uid), "evicted {uid} twice");
                        evicted.push(uid.clone());
                        pod.terminating = true;
                        eviction = Some(EvictionOutcome::Evicted);
                        call_again = true;
                    }
                    Action::ProbeRestoredKeys { .. } => {
                        restored = Some(1000);
                        call_again = true;
                    }
                    _ => persisted = t.next.clone(),
                }
                if crash_at == Some(executed) {
                    crashed = true;
                    break;
                }
            }
            if crashed || !call_again {
                break;
            }
        }
        if persisted.is_none() && pods.iter().all(|p| p.revision.as_deref() == Some(NEW) && p.ready)
        {
            break;
        }
    }
    (evicted, pods)
}

#[test]
fn full_rollout_replaces_each_pod_exactly_once_highest_first() {
    let (evicted, pods) = simulate(None);
    assert_eq!(evicted, ["uid-2-rev-old", "uid-1-rev-old", "uid-0-rev-old"]);
    assert!(pods.iter().all(|p| p.revision.as_deref() == Some(NEW) && p.ready));
}

#[test]
fn a_crash_after_any_action_resumes_and_never_evicts_twice() {
    for crash_at in 1..40 {
        let (evicted, pods) = simulate(Some(crash_at));
        assert_eq!(
            evicted,
            ["uid-2-rev-old", "uid-1-rev-old", "uid-0-rev-old"],
            "crash after action {crash_at}"
        );
        assert!(pods.iter().all(|p| p.revision.as_deref() == Some(NEW)), "crash at {crash_at}");
    }
}
