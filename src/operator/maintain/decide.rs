//! The maintenance decision: a pure function from thresholds, per-pod figures and time to a
//! per-pod [`Decision`]. No I/O; everything it needs is in its inputs, so the table of cases in
//! the tests is the specification.
//!
//! Order of the rules, first match wins per pod:
//! 1. a rollout is active -> nothing (a draining pod must not start a regrow);
//! 2. the pod is not Ready, or its stats could not be read -> nothing;
//! 3. a run is in progress on the pod -> nothing (it counts against `maxConcurrent`);
//! 4. fewer than `minKeys` live keys -> nothing;
//! 5. rebuild when `tombstoneRatio >= rebuildAtTombstoneRatio` or `fillRatio <= rebuildAtFillRatio`,
//!    else compact when `tombstoneRatio >= compactAtTombstoneRatio`, else nothing;
//! 6. hysteresis: when the pod's last run did not clear its trigger (its after-figure is still past
//!    the threshold), the same trigger fires again only once the figure has moved by
//!    [`HYSTERESIS`] beyond that after-figure; for the fill trigger, once the live keys dropped by
//!    [`HYSTERESIS`] (as a fraction) since the last rebuild. This stops a futile run repeating
//!    every cooldown while the figure hovers at the threshold;
//! 7. cooldown: no action within `cooldown` of the pod's last run start;
//! 8. at most `maxConcurrent` pods in progress at once: the worst pods (highest tombstone ratio,
//!    then lowest fill) get the free slots, the rest wait.

use super::duration::{DurationError, parse_duration, parse_positive_duration};
use crate::operator::crd::{MaintenanceRecord, MaintenanceSpec};
use crate::operator::node_client::MaintenanceKind;
use jiff::Timestamp;
use std::fmt;
use std::time::Duration;

/// How far a figure must move past the last run's after-figure before the same trigger refires
/// (absolute for ratios; relative drop for the live-key count of the fill trigger).
pub const HYSTERESIS: f64 = 0.05;

/// The spec's maintenance thresholds, parsed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    pub compact_at_tombstone_ratio: f64,
    pub rebuild_at_tombstone_ratio: f64,
    pub rebuild_at_fill_ratio: f64,
    pub min_keys: u64,
    pub cooldown: Duration,
    pub poll_interval: Duration,
    pub max_concurrent: u32,
}

/// A maintenance spec that cannot be acted on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThresholdError {
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("spec.maintenance.{field}: {value} is outside [0, 1]")]
    RatioOutOfRange { field: &'static str, value: f64 },
    #[error(
        "spec.maintenance.rebuildAtTombstoneRatio ({rebuild}) is below compactAtTombstoneRatio ({compact})"
    )]
    RebuildBelowCompact { compact: f64, rebuild: f64 },
    #[error("spec.maintenance.maxConcurrent must be at least 1")]
    ZeroConcurrency,
}

impl Thresholds {
    pub fn from_spec(spec: &MaintenanceSpec) -> Result<Self, ThresholdError> {
        for (field, value) in [
            ("compactAtTombstoneRatio", spec.compact_at_tombstone_ratio),
            ("rebuildAtTombstoneRatio", spec.rebuild_at_tombstone_ratio),
            ("rebuildAtFillRatio", spec.rebuild_at_fill_ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ThresholdError::RatioOutOfRange { field, value });
            }
        }
        if spec.rebuild_at_tombstone_ratio < spec.compact_at_tombstone_ratio {
            return Err(ThresholdError::RebuildBelowCompact {
                compact: spec.compact_at_tombstone_ratio,
                rebuild: spec.rebuild_at_tombstone_ratio,
            });
        }
        if spec.max_concurrent == 0 {
            return Err(ThresholdError::ZeroConcurrency);
        }
        Ok(Self {
            compact_at_tombstone_ratio: spec.compact_at_tombstone_ratio,
            rebuild_at_tombstone_ratio: spec.rebuild_at_tombstone_ratio,
            rebuild_at_fill_ratio: spec.rebuild_at_fill_ratio,
            min_keys: spec.min_keys,
            cooldown: parse_duration("spec.maintenance.cooldown", &spec.cooldown)?,
            poll_interval: parse_positive_duration(
                "spec.maintenance.pollInterval",
                &spec.poll_interval,
            )?,
            max_concurrent: spec.max_concurrent,
        })
    }
}

/// The engine figures of one pod, from its `/v1/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub keys: u64,
    pub tombstones: u64,
    pub tombstone_ratio: f64,
    pub fill_ratio: f64,
    pub memory_bytes: u64,
}

/// The pod's most recent compaction or rebuild, as recorded in status.
#[derive(Clone, Debug, PartialEq)]
pub struct LastRun {
    pub kind: MaintenanceKind,
    pub started_at: Timestamp,
    pub keys_before: u64,
    /// Set once the run finished.
    pub tombstones_after: Option<u64>,
}

impl LastRun {
    /// The newer of the two records; records whose time does not parse are ignored (a hand-edited
    /// status must not wedge maintenance).
    pub fn from_records(
        last_compaction: Option<&MaintenanceRecord>,
        last_rebuild: Option<&MaintenanceRecord>,
    ) -> Option<LastRun> {
        let parse = |kind, record: &MaintenanceRecord| {
            let started_at = record.started_at.parse::<Timestamp>().ok()?;
            Some(LastRun {
                kind,
                started_at,
                keys_before: record.keys_before,
                tombstones_after: record.tombstones_after,
            })
        };
        let compaction = last_compaction.and_then(|r| parse(MaintenanceKind::Compact, r));
        let rebuild = last_rebuild.and_then(|r| parse(MaintenanceKind::Rebuild, r));
        match (compaction, rebuild) {
            (Some(c), Some(r)) => Some(if r.started_at >= c.started_at { r } else { c }),
            (c, r) => c.or(r),
        }
    }

    /// Tombstone ratio right after the run, counting the keys it started with.
    fn ratio_after(&self) -> Option<f64> {
        let tombstones = self.tombstones_after?;
        Some(ratio(tombstones, self.keys_before + tombstones))
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// One pod as the decision sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodInput {
    pub name: String,
    pub ready: bool,
    /// `None` when `/v1/stats` could not be read this round.
    pub figures: Option<Figures>,
    /// A compaction or rebuild is running on the pod now.
    pub in_progress: bool,
    pub last_run: Option<LastRun>,
}

/// What to do with one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start(MaintenanceKind),
    None,
}

/// Why: the threshold crossed with its figure, or why nothing happens.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    TombstoneRatio {
        ratio: f64,
        threshold: f64,
    },
    FillRatio {
        fill: f64,
        threshold: f64,
    },
    BelowThresholds {
        ratio: f64,
        fill: f64,
    },
    RolloutActive,
    NotReady,
    NoStats,
    InProgress,
    BelowMinKeys {
        keys: u64,
        min_keys: u64,
    },
    Hysteresis {
        trigger: String,
    },
    /// Until when: a fixed time, so the Maintenance condition's message does not change on
    /// every poll (a countdown did, and each change was a status write).
    Cooldown {
        until: Timestamp,
    },
    ConcurrencyLimit {
        max_concurrent: u32,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::TombstoneRatio { ratio, threshold } => {
                write!(f, "tombstone ratio {ratio:.3} >= {threshold}")
            }
            Reason::FillRatio { fill, threshold } => {
                write!(f, "fill ratio {fill:.3} <= {threshold}")
            }
            Reason::BelowThresholds { ratio, fill } => {
                write!(f, "tombstone ratio {ratio:.3} and fill ratio {fill:.3} within thresholds")
            }
            Reason::RolloutActive => f.write_str("a rollout is in progress"),
            Reason::NotReady => f.write_str("pod not ready"),
            Reason::NoStats => f.write_str("stats unavailable"),
            Reason::InProgress => f.write_str("maintenance already running"),
            Reason::BelowMinKeys { keys, min_keys } => {
                write!(f, "{keys} keys < minKeys {min_keys}")
            }
            Reason::Hysteresis { trigger } => {
                write!(
                    f,
                    "{trigger}, but the last run did not clear it and the figure has not moved since"
                )
            }
            Reason::Cooldown { until } => write!(f, "cooldown until {until:.0}"),
            Reason::ConcurrencyLimit { max_concurrent } => {
                write!(f, "maxConcurrent {max_concurrent} pods already in maintenance")
            }
        }
    }
}

/// The decision for one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub pod: String,
    pub action: Action,
    pub reason: Reason,
    /// The figures it was taken on (for status and Events).
    pub figures: Option<Figures>,
}

/// Decides for every pod, in input order.
pub fn decide(
    thresholds: &Thresholds,
    pods: &[PodInput],
    rollout_active: bool,
    now: Timestamp,
) -> Vec<Decision> {
    let mut decisions: Vec<Decision> = pods
        .iter()
        .map(|pod| Decision {
            pod: pod.name.clone(),
            figures: pod.figures,
            ..decide_one(thresholds, pod, rollout_active, now)
        })
        .collect();

    let in_progress = pods.iter().filter(|p| p.in_progress).count();
    let mut free = (thresholds.max_concurrent as usize).saturating_sub(in_progress);
    let mut candidates: Vec<usize> =
        (0..decisions.len()).filter(|&i| matches!(decisions[i].action, Action::Start(_))).collect();
    // Worst first: highest tombstone ratio, then lowest fill, then input order (stable sort).
    candidates.sort_by(|&a, &b| {
        let fa = decisions[a].figures.unwrap_or_default();
        let fb = decisions[b].figures.unwrap_or_default();
        fb.tombstone_ratio
            .total_cmp(&fa.tombstone_ratio)
            .then(fa.fill_ratio.total_cmp(&fb.fill_ratio))
    });
    for index in candidates {
        if free > 0 {
            free -= 1;
        } else {
            decisions[index].action = Action::None;
            decisions[index].reason =
                Reason::ConcurrencyLimit { max_concurrent: thresholds.max_concurrent };
        }
    }
    decisions
}

fn decide_one(t: &Thresholds, pod: &PodInput, rollout_active: bool, now: Timestamp) -> Decision {
    let none =
        |reason| Decision { pod: String::new(), action: Action::None, reason, figures: None };
    if rollout_active {
        return none(Reason::RolloutActive);
    }
    if !pod.ready {
        return none(Reason::NotReady);
    }
    let Some(figures) = pod.figures else {
        return none(Reason::NoStats);
    };
    if pod.in_progress {
        return none(Reason::InProgress);
    }
    if figures.keys < t.min_keys {
        return none(Reason::BelowMinKeys { keys: figures.keys, min_keys: t.min_keys });
    }
    let ratio = figures.tombstone_ratio;
    let (kind, reason) = if ratio >= t.rebuild_at_tombstone_ratio {
        let reason = Reason::TombstoneRatio { ratio, threshold: t.rebuild_at_tombstone_ratio };
        (MaintenanceKind::Rebuild, reason)
    } else if figures.fill_ratio <= t.rebuild_at_fill_ratio {
        let reason =
            Reason::FillRatio { fill: figures.fill_ratio, threshold: t.rebuild_at_fill_ratio };
        (MaintenanceKind::Rebuild, reason)
    } else if ratio >= t.compact_at_tombstone_ratio {
        let reason = Reason::TombstoneRatio { ratio, threshold: t.compact_at_tombstone_ratio };
        (MaintenanceKind::Compact, reason)
    } else {
        return none(Reason::BelowThresholds { ratio, fill: figures.fill_ratio });
    };

    if let Some(last) = &pod.last_run {
        if held_by_hysteresis(t, &reason, &figures, last) {
            return none(Reason::Hysteresis { trigger: reason.to_string() });
        }
        let elapsed = now.duration_since(last.started_at);
        let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
        if elapsed < t.cooldown {
            let until = jiff::SignedDuration::try_from(t.cooldown)
                .ok()
                .and_then(|cooldown| last.started_at.checked_add(cooldown).ok())
                .unwrap_or(now);
            return none(Reason::Cooldown { until });
        }
    }
    Decision { pod: String::new(), action: Action::Start(kind), reason, figures: None }
}

/// True when the last run left this trigger uncleared and the figure has not moved far enough
/// since to make another run worth it.
fn held_by_hysteresis(t: &Thresholds, reason: &Reason, figures: &Figures, last: &LastRun) -> bool {
    match reason {
        Reason::TombstoneRatio { ratio, threshold } => match last.ratio_after() {
            Some(after) if after >= t.compact_at_tombstone_ratio.min(*threshold) => {
                *ratio < after + HYSTERESIS
            }
            _ => false,
        },
        Reason::FillRatio { .. } => {
            last.kind == MaintenanceKind::Rebuild
                && last.tombstones_after.is_some()
                && (figures.keys as f64) > last.keys_before as f64 * (1.0 - HYSTERESIS)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
