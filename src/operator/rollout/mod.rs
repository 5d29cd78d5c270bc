//! Hot updates behind the safe-deletion checklist (DESIGN.md section 5, docs/rollout.md).

pub mod checklist;
pub mod machine;
