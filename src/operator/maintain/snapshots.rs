//! The `SnapshotsCorrupt` condition and its Event: a pod whose `/v1/stats` says
//! `restore.outcome: all_corrupt` found snapshot files at start and could use none, so it started
//! empty (docs/operations.md, "Snapshots"). Pure, so the rules are unit-tested.
//!
//! The condition names each such pod and start: `<pod> started empty at <time>: ...`, one
//! segment per pod, joined by `; `. A pod whose stats could not be read this round keeps its
//! segment from the condition as it was (a missed poll neither clears it nor, on the next one,
//! raises a second Event); a pod that restored a snapshot, or is gone, drops it. A segment not in
//! the previous condition is a new start: it gets one Warning Event.

use crate::operator::node_client::RestoreStats;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The `outcome` of a node that started empty for want of a usable snapshot.
pub const ALL_CORRUPT: &str = "all_corrupt";
/// The Event's reason (and the condition's, while True).
pub const REASON: &str = "SnapshotsCorrupt";

/// One pod as this round saw it.
#[derive(Clone, Copy, Debug)]
pub struct PodRestore<'a> {
    pub pod: &'a str,
    /// `None` when its `/v1/stats` was not read this round.
    pub restore: Option<&'a RestoreStats>,
}

/// The condition to set and the Events to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub corrupt: bool,
    pub reason: &'static str,
    pub message: String,
    /// One (pod, note) per pod start not reported before.
    pub events: Vec<(String, String)>,
}

/// Decides the condition from this round's reports and the condition as it was.
pub fn evaluate(previous: Option<&Condition>, pods: &[PodRestore<'_>]) -> Verdict {
    let before: Vec<&str> = previous
        .filter(|c| c.status == "True")
        .map(|c| c.message.split("; ").collect())
        .unwrap_or_default();
    let mut segments = Vec::new();
    let mut events = Vec::new();
    for pod in pods {
        match pod.restore {
            Some(restore) if restore.outcome == ALL_CORRUPT => {
                let segment = segment(pod.pod, restore);
                if !before.contains(&segment.as_str()) {
                    events.push((pod.pod.to_string(), event_note(pod.pod, restore)));
                }
                segments.push(segment);
            }
            Some(_) => {}
            None => {
                let prefix = format!("{} started empty", pod.pod);
                segments.extend(
                    before.iter().filter(|s| s.starts_with(&prefix)).map(|s| s.to_string()),
                );
            }
        }
    }
    if segments.is_empty() {
        Verdict {
            corrupt: false,
            reason: "NoneCorrupt",
            message: "no pod started empty for want of a usable snapshot".into(),
            events,
        }
    } else {
        Verdict { corrupt: true, reason: REASON, message: segments.join("; "), events }
    }
}

/// `<pod> started empty at <time>: every snapshot unusable (<file> <reason>, ...)`: stable for
/// one start of the pod, and free of `; `.
fn segment(pod: &str, restore: &RestoreStats) -> String {
    let files: Vec<String> =
        restore.unusable.iter().map(|u| format!("{} {}", u.file, u.reason)).collect();
    format!(
        "{pod} started empty at {}: every snapshot unusable ({})",
        restore.finished_at.as_deref().unwrap_or("an unknown time"),
        files.join(", ")
    )
}

/// The Event's note: the pod, each file with its error and where it went, and what it means.
fn event_note(pod: &str, restore: &RestoreStats) -> String {
    let files: Vec<String> = restore
        .unusable
        .iter()
        .map(|u| match &u.moved_to {
            Some(to) => format!("{} ({}), moved to {to}", u.file, u.error),
            None => format!("{} ({}), could not be moved", u.file, u.error),
        })
        .collect();
    format!(
        "pod {pod} started EMPTY: none of its {} snapshots could be used: {}. It serves, cold; \
         the files are kept for a post-mortem (docs/operations.md, Snapshots)",
        restore.unusable.len(),
        files.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::node_client::UnusableSnapshot;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn all_corrupt(at: &str) -> RestoreStats {
        RestoreStats {
            outcome: ALL_CORRUPT.into(),
            generation: None,
            unusable: vec![
                UnusableSnapshot {
                    file: "mapcache-000002.snap".into(),
                    reason: "truncated".into(),
                    error: "truncated at byte 8 (file is 8 bytes)".into(),
                    moved_to: Some("corrupt/mapcache-000002.snap".into()),
                },
                UnusableSnapshot {
                    file: "mapcache-000001.snap".into(),
                    reason: "checksum".into(),
                    error: "file checksum mismatch".into(),
                    moved_to: None,
                },
            ],
            finished_at: Some(at.into()),
        }
    }

    fn restored() -> RestoreStats {
        RestoreStats { outcome: "restored".into(), generation: Some(4), ..RestoreStats::default() }
    }

    fn condition(verdict: &Verdict) -> Condition {
        Condition {
            type_: "SnapshotsCorrupt".into(),
            status: if verdict.corrupt { "True" } else { "False" }.into(),
            reason: verdict.reason.into(),
            message: verdict.message.clone(),
            observed_generation: None,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    const SEGMENT: &str = "mc-1 started empty at 2026-12-07T23:00:00Z: every snapshot unusable \
                           (mapcache-000002.snap truncated, mapcache-000001.snap checksum)";

    #[test]
    fn a_pod_that_started_empty_sets_the_condition_and_gets_one_event() {
        let report = all_corrupt("2026-12-07T23:00:00Z");
        let ok = restored();
        let pods = [
            PodRestore { pod: "mc-0", restore: Some(&ok) },
            PodRestore { pod: "mc-1", restore: Some(&report) },
        ];
        let first = evaluate(None, &pods);
        assert_eq!((first.corrupt, first.reason, first.message.as_str()), (true, REASON, SEGMENT));
        assert_eq!(
            first
                .events
                .iter()
                .map(|(pod, note)| (pod.as_str(), note.as_str()))
                .collect::<Vec<_>>(),
            [(
                "mc-1",
                "pod mc-1 started EMPTY: none of its 2 snapshots could be used: mapcache-000002.snap \
              (truncated at byte 8 (file is 8 bytes)), moved to corrupt/mapcache-000002.snap; \
              mapcache-000001.snap (file checksum mismatch), could not be moved. It serves, \
              cold; the files are kept for a post-mortem (docs/operations.md, Snapshots)"
            )]
        );
        // The next rounds: the same start, no second Event, even across a missed poll.
        let again = evaluate(Some(&condition(&first)), &pods);
        assert_eq!((again.corrupt, again.message.as_str(), again.events.len()), (true, SEGMENT, 0));
        let missed = [
            PodRestore { pod: "mc-0", restore: Some(&ok) },
            PodRestore { pod: "mc-1", restore: None },
        ];
        let carried = evaluate(Some(&condition(&again)), &missed);
        assert_eq!(
            (carried.corrupt, carried.message.as_str(), carried.events.len()),
            (true, SEGMENT, 0)
        );
        let back = evaluate(Some(&condition(&carried)), &pods);
        assert_eq!(back.events.len(), 0);
    }

    #[test]
    fn a_new_start_of_the_pod_is_a_new_event_and_a_restored_one_clears_it() {
        let first = all_corrupt("2026-12-07T23:00:00Z");
        let verdict = evaluate(None, &[PodRestore { pod: "mc-1", restore: Some(&first) }]);
        let second = all_corrupt("2026-12-08T01:00:00Z");
        let restarted = evaluate(
            Some(&condition(&verdict)),
            &[PodRestore { pod: "mc-1", restore: Some(&second) }],
        );
        assert_eq!(restarted.events.len(), 1);
        assert!(restarted.message.starts_with("mc-1 started empty at 2026-12-08T01:00:00Z"));
        let ok = restored();
        let cleared = evaluate(
            Some(&condition(&restarted)),
            &[PodRestore { pod: "mc-1", restore: Some(&ok) }],
        );
        assert_eq!(
            (cleared.corrupt, cleared.reason, cleared.events.len()),
            (false, "NoneCorrupt", 0)
        );
        // A pod that is gone takes its segment with it; a similar name is another pod.
        let gone =
            evaluate(Some(&condition(&verdict)), &[PodRestore { pod: "mc-10", restore: None }]);
        assert!(!gone.corrupt);
    }
}
