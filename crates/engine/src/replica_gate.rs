//! Synchronous commit. While a synchronous secondary is in step, a commit is acknowledged, and becomes visible
//! to readers, only once that secondary has hardened it. A secondary that stays silent past its session
//! timeout is dropped from synchronous commit, so the primary goes on without it (as SQL Server does) until the
//! link finds it caught up again.

use parking_lot::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    active: bool,
    /// Bumped when this copy stops being primary: commits waiting then cannot know their fate.
    stepped_down: u64,
    hardened: u64,
    timeout: Duration,
    /// Commits that gave up waiting because the secondary was silent past the timeout.
    timeouts: u64,
}

#[derive(Default)]
pub struct ReplicaGate {
    st: Mutex<State>,
    cv: Condvar,
}

impl ReplicaGate {
    /// The secondary is in step at `hardened`: from now on commits wait for it.
    pub fn enable(&self, hardened: u64, timeout: Duration) {
        let mut s = self.st.lock();
        s.active = true;
        s.hardened = s.hardened.max(hardened);
        s.timeout = timeout;
        self.cv.notify_all();
    }

    /// This copy stopped being primary: commits still waiting for the secondary are not acknowledged as done.
    pub fn step_down(&self) {
        let mut s = self.st.lock();
        s.active = false;
        s.stepped_down += 1;
        self.cv.notify_all();
    }

    /// Stop waiting for the secondary (asynchronous mode, disconnected, removed).
    pub fn disable(&self) {
        let mut s = self.st.lock();
        s.active = false;
        self.cv.notify_all();
    }

    /// The secondary acknowledged everything up to `lsn` as hardened.
    pub fn hardened(&self, lsn: u64) {
        let mut s = self.st.lock();
        if lsn > s.hardened {
            s.hardened = lsn;
            self.cv.notify_all();
        }
    }

    pub fn active(&self) -> bool {
        self.st.lock().active
    }

    pub fn timeouts(&self) -> u64 {
        self.st.lock().timeouts
    }

    /// The newest LSN readers may see when `durable` is the local durable LSN.
    pub fn visible(&self, durable: u64) -> u64 {
        let s = self.st.lock();
        if s.active {
            durable.min(s.hardened)
        } else {
            durable
        }
    }

    /// Wait until the synchronous secondary hardened `lsn`.
    pub fn wait(&self, lsn: u64) -> Wait {
        let mut s = self.st.lock();
        let deadline = Instant::now() + s.timeout;
        let generation = s.stepped_down;
        while s.active && s.hardened < lsn {
            if self.cv.wait_until(&mut s, deadline).timed_out() && s.active && s.hardened < lsn {
                s.active = false;
                s.timeouts += 1;
                self.cv.notify_all();
                return Wait::TimedOut;
            }
        }
        if s.stepped_down != generation && s.hardened < lsn {
            return Wait::SteppedDown;
        }
        Wait::Done
    }
}

/// How a commit's wait for the synchronous secondary ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Hardened by the secondary, or synchronous commit is not (or no longer) in force.
    Done,
    /// The secondary stayed silent past the session timeout: the gate is now off, the commit goes on.
    TimedOut,
    /// This copy stepped down while the commit waited: whether it survives depends on the new primary.
    SteppedDown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn inactive_gate_never_waits_and_hides_nothing() {
        let g = ReplicaGate::default();
        assert_eq!(g.wait(10), Wait::Done);
        assert_eq!(g.visible(7), 7);
    }

    #[test]
    fn active_gate_waits_for_the_ack_and_hides_what_is_not_hardened() {
        let g = Arc::new(ReplicaGate::default());
        g.enable(5, Duration::from_secs(5));
        assert_eq!(g.visible(9), 5);
        let g2 = g.clone();
        let t = std::thread::spawn(move || g2.wait(8));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!t.is_finished());
        g.hardened(8);
        assert_eq!(t.join().unwrap(), Wait::Done);
        assert_eq!(g.visible(9), 8);
    }

    #[test]
    fn a_silent_secondary_is_dropped_after_the_timeout() {
        let g = ReplicaGate::default();
        g.enable(1, Duration::from_millis(50));
        let t = Instant::now();
        assert_eq!(g.wait(2), Wait::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(!g.active());
        assert_eq!(g.timeouts(), 1);
        assert_eq!(g.visible(9), 9);
    }

    #[test]
    fn a_commit_waiting_when_the_copy_steps_down_is_not_done() {
        let g = Arc::new(ReplicaGate::default());
        g.enable(1, Duration::from_secs(5));
        let g2 = g.clone();
        let t = std::thread::spawn(move || g2.wait(3));
        std::thread::sleep(Duration::from_millis(30));
        g.step_down();
        assert_eq!(t.join().unwrap(), Wait::SteppedDown);
    }
}
