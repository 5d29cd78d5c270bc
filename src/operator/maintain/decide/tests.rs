//! The decision table. Each case names the behaviour it locks.

use super::*;

fn thresholds() -> Thresholds {
    Thresholds::from_spec(&MaintenanceSpec::default()).expect("defaults are valid")
}

fn now() -> Timestamp {
    "2026-11-22T03:00:00Z".parse().expect("timestamp")
}

fn minutes_ago(minutes: i64) -> Timestamp {
    now() - jiff::SignedDuration::from_mins(minutes)
}

fn figures(keys: u64, tombstones: u64, fill_ratio: f64) -> Figures {
    Figures {
        keys,
        tombstones,
        tombstone_ratio: ratio(tombstones, keys + tombstones),
        fill_ratio,
        memory_bytes: 1 << 20,
    }
}

fn pod(name: &str, figures: Figures) -> PodInput {
    PodInput {
        name: name.into(),
        ready: true,
        figures: Some(figures),
        in_progress: false,
        last_run: None,
    }
}

fn compact_run(
    started_minutes_ago: i64,
    keys_before: u64,
    tombstones_after: Option<u64>,
) -> LastRun {
    LastRun {
        kind: MaintenanceKind::Compact,
        started_at: minutes_ago(started_minutes_ago),
        keys_before,
        tombstones_after,
    }
}

fn one(pod: PodInput) -> Decision {
    decide_with(pod, false)
}

fn decide_with(pod: PodInput, rollout_active: bool) -> Decision {
    let mut decisions = decide(&thresholds(), &[pod], rollout_active, now());
    assert_eq!(decisions.len(), 1);
    decisions.remove(0)
}

const COMPACT: Action = Action::Start(MaintenanceKind::Compact);
const REBUILD: Action = Action::Start(MaintenanceKind::Rebuild);

#[test]
fn table_of_single_pod_cases() {
    // (case, pod, rollout active, expected action, expected reason)
    let cases: Vec<(&str, PodInput, bool, Action, Reason)> = vec![
        (
            "clean pod: nothing",
            pod("p", figures(10_000, 100, 0.6)),
            false,
            Action::None,
            Reason::BelowThresholds { ratio: 100.0 / 10_100.0, fill: 0.6 },
        ),
        (
            "ratio exactly at compact threshold compacts",
            pod("p", figures(3_000, 1_000, 0.6)),
            false,
            COMPACT,
            Reason::TombstoneRatio { ratio: 0.25, threshold: 0.25 },
        ),
        (
            "ratio just below compact threshold does nothing",
            pod("p", figures(3_001, 1_000, 0.6)),
            false,
            Action::None,
            Reason::BelowThresholds { ratio: 1_000.0 / 4_001.0, fill: 0.6 },
        ),
        (
            "ratio at rebuild threshold rebuilds rather than compacts",
            pod("p", figures(2_000, 2_000, 0.6)),
            false,
            REBUILD,
            Reason::TombstoneRatio { ratio: 0.5, threshold: 0.5 },
        ),
        (
            "low fill with few tombstones rebuilds (memory back after mass delete + compact)",
            pod("p", figures(2_000, 0, 0.125)),
            false,
            REBUILD,
            Reason::FillRatio { fill: 0.125, threshold: 0.125 },
        ),
        (
            "fewer than minKeys: never",
            pod("p", figures(999, 9_000, 0.01)),
            false,
            Action::None,
            Reason::BelowMinKeys { keys: 999, min_keys: 1000 },
        ),
        (
            "rollout active: never",
            pod("p", figures(2_000, 2_000, 0.6)),
            true,
            Action::None,
            Reason::RolloutActive,
        ),
        (
            "not ready: never",
            PodInput { ready: false, ..pod("p", figures(2_000, 2_000, 0.6)) },
            false,
            Action::None,
            Reason::NotReady,
        ),
        (
            "stats unreadable: never",
            PodInput { figures: None, ..pod("p", figures(2_000, 2_000, 0.6)) },
            false,
            Action::None,
            Reason::NoStats,
        ),
        (
            "already running: not again",
            PodInput { in_progress: true, ..pod("p", figures(2_000, 2_000, 0.6)) },
            false,
            Action::None,
            Reason::InProgress,
        ),
        (
            "within cooldown of the last run: wait, until the cooldown ends",
            PodInput {
                last_run: Some(compact_run(4, 2_000, Some(0))),
                ..pod("p", figures(3_000, 1_000, 0.6))
            },
            false,
            Action::None,
            Reason::Cooldown { until: now() + jiff::SignedDuration::from_mins(6) },
        ),
        (
            "cooldown over: acts again",
            PodInput {
                last_run: Some(compact_run(10, 2_000, Some(0))),
                ..pod("p", figures(3_000, 1_000, 0.6))
            },
            false,
            COMPACT,
            Reason::TombstoneRatio { ratio: 0.25, threshold: 0.25 },
        ),
        (
            "last run still running (no after-figures) only cools down",
            PodInput {
                last_run: Some(compact_run(60, 2_000, None)),
                ..pod("p", figures(3_000, 1_000, 0.6))
            },
            false,
            COMPACT,
            Reason::TombstoneRatio { ratio: 0.25, threshold: 0.25 },
        ),
        (
            "hysteresis: last run left ratio 0.30 and it is now 0.32: hold",
            PodInput {
                last_run: Some(compact_run(60, 7_000, Some(3_000))),
                ..pod("p", figures(6_800, 3_200, 0.6))
            },
            false,
            Action::None,
            Reason::Hysteresis { trigger: "tombstone ratio 0.320 >= 0.25".into() },
        ),
        (
            "hysteresis released: ratio moved from 0.30 to 0.35",
            PodInput {
                last_run: Some(compact_run(60, 7_000, Some(3_000))),
                ..pod("p", figures(6_500, 3_500, 0.6))
            },
            false,
            COMPACT,
            Reason::TombstoneRatio { ratio: 0.35, threshold: 0.25 },
        ),
        (
            "hysteresis on fill: rebuilt at 10k keys, still 9.6k keys and low fill: hold",
            PodInput {
                last_run: Some(LastRun {
                    kind: MaintenanceKind::Rebuild,
                    started_at: minutes_ago(60),
                    keys_before: 10_000,
                    tombstones_after: Some(0),
                }),
                ..pod("p", figures(9_600, 0, 0.1))
            },
            false,
            Action::None,
            Reason::Hysteresis { trigger: "fill ratio 0.100 <= 0.125".into() },
        ),
        (
            "fill hysteresis released: keys dropped 10% since the rebuild",
            PodInput {
                last_run: Some(LastRun {
                    kind: MaintenanceKind::Rebuild,
                    started_at: minutes_ago(60),
                    keys_before: 10_000,
                    tombstones_after: Some(0),
                }),
                ..pod("p", figures(9_000, 0, 0.1))
            },
            false,
            REBUILD,
            Reason::FillRatio { fill: 0.1, threshold: 0.125 },
        ),
    ];
    for (case, input, rollout_active, action, reason) in cases {
        let decision = decide_with(input, rollout_active);
        assert_eq!(decision.action, action, "{case}");
        assert_eq!(decision.reason, reason, "{case}");
        assert_eq!(decision.pod, "p", "{case}");
    }
}

#[test]
fn max_concurrent_gives_the_slot_to_the_worst_pod() {
    let pods = [
        pod("mc-0", figures(3_000, 1_000, 0.6)), // 0.25
        pod("mc-1", figures(1_000, 1_000, 0.6)), // 0.5: worst
        pod("mc-2", figures(2_000, 1_000, 0.6)), // 0.33
    ];
    let decisions = decide(&thresholds(), &pods, false, now());
    let actions: Vec<Action> = decisions.iter().map(|d| d.action).collect();
    assert_eq!(actions, [Action::None, REBUILD, Action::None]);
    assert_eq!(decisions[0].reason, Reason::ConcurrencyLimit { max_concurrent: 1 });
    assert_eq!(decisions[2].reason, Reason::ConcurrencyLimit { max_concurrent: 1 });
    assert_eq!(decisions[1].figures, Some(figures(1_000, 1_000, 0.6)));
}

#[test]
fn a_running_pod_uses_up_the_slot() {
    let pods = [
        PodInput { in_progress: true, ..pod("mc-0", figures(3_000, 1_000, 0.6)) },
        pod("mc-1", figures(1_000, 1_000, 0.6)),
    ];
    let decisions = decide(&thresholds(), &pods, false, now());
    assert_eq!(decisions[0].reason, Reason::InProgress);
    assert_eq!(decisions[1].action, Action::None);
    assert_eq!(decisions[1].reason, Reason::ConcurrencyLimit { max_concurrent: 1 });
}

#[test]
fn max_concurrent_two_starts_two() {
    let spec = MaintenanceSpec { max_concurrent: 2, ..MaintenanceSpec::default() };
    let thresholds = Thresholds::from_spec(&spec).expect("valid");
    let pods = [
        pod("mc-0", figures(3_000, 1_000, 0.6)),
        pod("mc-1", figures(1_000, 1_000, 0.6)),
        pod("mc-2", figures(2_000, 1_000, 0.6)),
    ];
    let actions: Vec<Action> =
        decide(&thresholds, &pods, false, now()).iter().map(|d| d.action).collect();
    assert_eq!(actions, [Action::None, REBUILD, COMPACT]);
}

#[test]
fn thresholds_from_defaults() {
    let t = thresholds();
    assert_eq!(t.compact_at_tombstone_ratio, 0.25);
    assert_eq!(t.rebuild_at_tombstone_ratio, 0.5);
    assert_eq!(t.rebuild_at_fill_ratio, 0.125);
    assert_eq!(t.min_keys, 1000);
    assert_eq!(t.cooldown, Duration::from_secs(600));
    assert_eq!(t.poll_interval, Duration::from_secs(30));
    assert_eq!(t.max_concurrent, 1);
}

#[test]
fn thresholds_refuse_bad_specs_precisely() {
    let base = MaintenanceSpec::default();
    let cases = [
        (
            MaintenanceSpec { compact_at_tombstone_ratio: 1.5, ..base.clone() },
            "spec.maintenance.compactAtTombstoneRatio: 1.5 is outside [0, 1]",
        ),
        (
            MaintenanceSpec { rebuild_at_tombstone_ratio: 0.2, ..base.clone() },
            "spec.maintenance.rebuildAtTombstoneRatio (0.2) is below compactAtTombstoneRatio (0.25)",
        ),
        (
            MaintenanceSpec { max_concurrent: 0, ..base.clone() },
            "spec.maintenance.maxConcurrent must be at least 1",
        ),
        (
            MaintenanceSpec { poll_interval: "0s".into(), ..base.clone() },
            "spec.maintenance.pollInterval: must be longer than zero (got \"0s\"; expected a duration like \"30s\", \"10m\", \"1h30m\")",
        ),
    ];
    for (spec, message) in cases {
        assert_eq!(Thresholds::from_spec(&spec).unwrap_err().to_string(), message);
    }
    let bad_cooldown = MaintenanceSpec { cooldown: "soon".into(), ..base };
    let error = Thresholds::from_spec(&bad_cooldown).unwrap_err().to_string();
    assert!(error.starts_with("spec.maintenance.cooldown: "), "{error}");
}

#[test]
fn last_run_is_the_newer_record_and_ignores_unparsable_times() {
    let record = |at: &str, keys_before| MaintenanceRecord {
        started_at: at.into(),
        reason: "r".into(),
        keys_before,
        ..MaintenanceRecord::default()
    };
    let compaction = record("2026-11-22T02:00:00Z", 1);
    let rebuild = record("2026-11-22T02:30:00Z", 2);
    let last = LastRun::from_records(Some(&compaction), Some(&rebuild)).expect("a run");
    assert_eq!((last.kind, last.keys_before), (MaintenanceKind::Rebuild, 2));
    let last = LastRun::from_records(Some(&compaction), Some(&record("garbage", 3))).expect("run");
    assert_eq!((last.kind, last.keys_before), (MaintenanceKind::Compact, 1));
    assert_eq!(LastRun::from_records(None, None), None);
}

#[test]
fn reasons_read_well_in_events() {
    assert_eq!(
        Reason::TombstoneRatio { ratio: 0.6, threshold: 0.5 }.to_string(),
        "tombstone ratio 0.600 >= 0.5"
    );
    assert_eq!(
        Reason::Cooldown { until: "2026-11-22T03:06:00.123Z".parse().expect("time") }.to_string(),
        "cooldown until 2026-11-22T03:06:00Z"
    );
    assert_eq!(one(pod("p", figures(10, 0, 0.5))).reason.to_string(), "10 keys < minKeys 1000");
}
