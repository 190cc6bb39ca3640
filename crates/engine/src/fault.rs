//! Fault points for crash tests: `MILINK_FAULT=<point>:<n>` makes the process SIGKILL itself the n-th time it
//! reaches `<point>`, so a test can stop a real process mid-commit, mid-log-write or mid-checkpoint.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;

static ARMED: OnceLock<Option<(String, AtomicI64)>> = OnceLock::new();

fn armed() -> &'static Option<(String, AtomicI64)> {
    ARMED.get_or_init(|| {
        let spec = std::env::var("MILINK_FAULT").ok()?;
        let (point, n) = spec.split_once(':')?;
        Some((point.to_string(), AtomicI64::new(n.parse().ok()?)))
    })
}

/// True when the fault point `point` fires now; the caller then does its half-work and calls [`die`].
pub fn should_fire(point: &str) -> bool {
    match armed() {
        Some((p, n)) if p == point => n.fetch_sub(1, Ordering::SeqCst) == 1,
        _ => false,
    }
}

/// Kill this process the way a power cut would: no destructors, no flushes.
pub fn die() -> ! {
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

/// Fire-and-die at a point where no half-work is needed.
pub fn point(point: &str) {
    if should_fire(point) {
        die();
    }
}
