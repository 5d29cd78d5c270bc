//! Tombstone-driven maintenance (DESIGN.md section 4, docs/maintenance.md): read each ready
//! pod's `/v1/stats`, decide (pure, [`decide`]), trigger `POST /v1/compact` or `/v1/rebuild`,
//! follow the run, and record it in status ([`step`]). The same stats tell which pods started
//! empty because every snapshot on their volume was unusable ([`snapshots`]).

pub mod decide;
pub mod duration;
pub mod metrics;
pub mod snapshots;
pub mod step;

pub use step::run;
