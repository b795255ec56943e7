//! The wall clock, read in one place: Unix milliseconds. The pure crates
//! (vt-plan, vt-control) never call it; the daemons pass its value in.

use std::time::SystemTime;
use vt_plan::Millis;

/// Now, in Unix milliseconds.
pub fn now() -> Millis {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
