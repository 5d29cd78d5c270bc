//! Hot updates behind the safe-deletion checklist (DESIGN.md section 5, docs/rollout.md):
//! the pure state machine ([`machine`]), the pure checklist judgement ([`checklist`]), and the
//! reconcile step that carries them out ([`step`]).

pub mod checklist;
pub mod machine;
pub mod metrics;
pub mod step;

pub use step::run;
