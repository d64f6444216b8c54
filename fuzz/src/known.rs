//! Findings that were reported, and how a run can look past them until they are fixed.
//!
//! Each invariant a target checks is always checked. When one fails because of a finding
//! that is already reported (its reproducer in `fuzz/regressions/`), a long run would stop
//! at it again and again and find nothing new; `TOWER_SECURE_FUZZ_KNOWN` (a comma
//! separated list of the ids below, or `all`) lets a run step over those, and only those.
//! By default nothing is stepped over. The ids below were all fixed in 3c73d5b; their
//! regressions guard the fixes (`build-ci.sh --regressions`).

use std::sync::OnceLock;

/// Every id, with the regression directory that shows it (see README.md).
pub const KNOWN: &[(&str, &str)] = &[
    ("name-roundtrip", "regressions/qualified_name/"),
    ("name-length", "regressions/qualified_name/"),
    ("path-c1-control", "regressions/canonical_path/"),
    ("path-double-slash", "regressions/canonical_path/"),
    ("config-line-zero", "regressions/config_deployment/"),
    ("tenant-pattern-dead", "regressions/config_deployment/"),
];

fn allowed() -> &'static Vec<String> {
    static ALLOWED: OnceLock<Vec<String>> = OnceLock::new();
    ALLOWED.get_or_init(|| {
        std::env::var("TOWER_SECURE_FUZZ_KNOWN")
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    })
}

/// True when the run was told to step over the known finding `id`.
pub fn tolerated(id: &str) -> bool {
    debug_assert!(KNOWN.iter().any(|(known, _)| *known == id), "unknown finding id {id}");
    let allowed = allowed();
    allowed.iter().any(|a| a == "all" || a == id)
}

/// Asserts `ok`, unless the finding `id` is tolerated in this run.
#[track_caller]
pub fn check(id: &str, ok: bool, message: impl FnOnce() -> String) {
    if !ok && !tolerated(id) {
        panic!("[{id}] {}", message());
    }
}
