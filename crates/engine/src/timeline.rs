//! A database's timeline: which epoch wrote which LSNs. Every promotion (failover, a removed link making a
//! secondary writable) starts a new epoch at the next LSN, so two copies can find the LSN where their histories
//! forked: the last LSN both wrote in the same epoch.

/// (epoch, first LSN written in it), in LSN order.
pub type History = Vec<(u64, u64)>;

/// The epoch that wrote `lsn`; None if `lsn` precedes the history (a copy seeded later knows nothing earlier).
pub fn epoch_at(h: &[(u64, u64)], lsn: u64) -> Option<u64> {
    h.iter()
        .rev()
        .find(|(_, first)| *first <= lsn)
        .map(|(e, _)| *e)
}

/// A new epoch number after `current`: the high half counts promotions, the low half is random, so two copies
/// promoted independently from the same state still get different epochs.
pub fn next_epoch(current: u64) -> u64 {
    let g = crate::database::new_guid();
    let low = u32::from_le_bytes([g[0], g[1], g[2], g[3]]) | 1;
    (((current >> 32) + 1) << 32) | low as u64
}

/// The last LSN on which two copies agree: `ours` ends at `our_end`, `theirs` at `their_end`.
pub fn fork_point(ours: &[(u64, u64)], our_end: u64, theirs: &[(u64, u64)], their_end: u64) -> u64 {
    let mut starts: Vec<u64> = ours.iter().chain(theirs).map(|(_, f)| *f).collect();
    starts.sort_unstable();
    starts.dedup();
    let agreed = our_end.min(their_end);
    for lsn in starts.into_iter().filter(|l| *l <= agreed) {
        if let (Some(a), Some(b)) = (epoch_at(ours, lsn), epoch_at(theirs, lsn)) {
            if a != b {
                return lsn - 1;
            }
        }
    }
    agreed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_history_agrees_up_to_the_shorter_end() {
        let h = vec![(1, 1)];
        assert_eq!(fork_point(&h, 100, &h, 80), 80);
        assert_eq!(fork_point(&h, 80, &h, 100), 80);
    }

    #[test]
    fn planned_failover_is_not_a_fork() {
        // The new primary started epoch 7 at 101 after the old one stopped at 100.
        let new_primary = vec![(1, 1), (7, 101)];
        let old_primary = vec![(1, 1)];
        assert_eq!(fork_point(&new_primary, 150, &old_primary, 100), 100);
    }

    #[test]
    fn forced_failover_forks_where_the_new_epoch_began() {
        // The secondary was promoted at 91 while the old primary went on to 100 in epoch 1.
        let new_primary = vec![(1, 1), (9, 91)];
        let old_primary = vec![(1, 1)];
        assert_eq!(fork_point(&new_primary, 120, &old_primary, 100), 90);
    }

    #[test]
    fn a_copy_seeded_later_knows_nothing_earlier() {
        let primary = vec![(1, 1), (5, 40), (9, 70)];
        let seeded = vec![(9, 80)];
        assert_eq!(fork_point(&primary, 200, &seeded, 150), 150);
        assert_eq!(epoch_at(&seeded, 10), None);
    }

    #[test]
    fn epochs_grow_and_differ() {
        let a = next_epoch(1);
        assert!(a > 1 && a >> 32 == 1);
        assert!(next_epoch(a) >> 32 == 2);
    }
}
