//! Log shipping: the primary reads durable blocks from any LSN (already encoded and checksummed: no
//! re-encoding) and the secondary hardens them in its own log under the primary's LSNs, then redoes them.
//! The primary keeps its log from the replica's hardened LSN on, so a stalled replica holds the log
//! (9002 AVAILABILITY_REPLICA) instead of losing its place.

use engine::log::format::{decode_block, Block};
use engine::{Database, Result, SqlError};
use std::sync::Arc;
use std::time::Duration;

pub struct LogShipper {
    db: Arc<Database>,
    hold: String,
    pub next_lsn: u64,
}

impl LogShipper {
    /// Ship to `replica` from `from_lsn` on.
    pub fn new(db: &Arc<Database>, replica: &str, from_lsn: u64) -> Result<LogShipper> {
        let first = db.log().first_lsn();
        if from_lsn < first && from_lsn <= db.log().durable_lsn() {
            return Err(SqlError::new(
                1408,
                16,
                format!(
                    "The remote copy of database \"{}\" is not recovered far enough to enable database mirroring: it needs LSN {from_lsn}, and the log starts at {first}.",
                    db.name
                ),
            ));
        }
        let hold = format!("replica:{replica}");
        db.hold_log(&hold, from_lsn);
        Ok(LogShipper {
            db: db.clone(),
            hold,
            next_lsn: from_lsn,
        })
    }

    /// The next durable blocks (raw), up to `max_bytes`, waiting up to `wait` for one to appear.
    pub fn next_batch(&mut self, max_bytes: usize, wait: Duration) -> Result<Vec<Vec<u8>>> {
        let log = self.db.log();
        if log.durable_lsn() < self.next_lsn {
            log.wait_past(self.next_lsn - 1, wait);
        }
        let end = log.durable_lsn();
        let mut out = Vec::new();
        let mut bytes = 0;
        while self.next_lsn <= end && (bytes < max_bytes || out.is_empty()) {
            let (raw, _) = log.read_raw(self.next_lsn)?;
            bytes += raw.len();
            out.push(raw);
            self.next_lsn += 1;
        }
        Ok(out)
    }

    /// The replica hardened everything up to `hardened`: the log before it may be truncated.
    pub fn acknowledge(&self, hardened: u64) {
        self.acker().acknowledge(hardened);
    }

    /// Acknowledges from another task without waiting for this shipper (which may be waiting for new log).
    pub fn acker(&self) -> Acker {
        Acker {
            db: self.db.clone(),
            hold: self.hold.clone(),
        }
    }

    /// The replica is gone: stop holding log for it.
    pub fn remove(self) -> Result<()> {
        self.db.release_log(&self.hold)
    }
}

/// Releases the primary's log as a replica hardens it.
#[derive(Clone)]
pub struct Acker {
    db: Arc<Database>,
    hold: String,
}

impl Acker {
    pub fn acknowledge(&self, hardened: u64) {
        self.db.hold_log(&self.hold, hardened + 1);
    }
}

/// Secondary: harden and redo shipped blocks. Returns the last LSN applied.
pub fn apply(target: &Database, raw: &[Vec<u8>]) -> Result<u64> {
    let (_, blocks) = harden(target, raw)?;
    target.apply_hardened(blocks)?;
    Ok(target.log().durable_lsn())
}

/// Secondary: decode shipped blocks and make them durable in the local log (what a synchronous primary waits
/// for). Returns the hardened LSN and the blocks still to apply.
pub fn harden(target: &Database, raw: &[Vec<u8>]) -> Result<(u64, Vec<Block>)> {
    let ps = target.control().page_size;
    let mut blocks = Vec::with_capacity(raw.len());
    let mut next = target.log().durable_lsn() + 1;
    for r in raw {
        let (b, _) = decode_block(r, ps)
            .map_err(|e| SqlError::corrupt(&target.name, format!("shipped log block: {e}")))?;
        if b.lsn < next {
            // Already hardened (a resent batch after a reconnect) — but only if it is the same history.
            if let Ok((_, local)) = target.log().read_raw(b.lsn) {
                if local.epoch != b.epoch {
                    return Err(SqlError::new(
                        41148,
                        16,
                        format!("The log of database '{}' at LSN {} was written in another epoch than the primary's: the copies diverged.", target.name, b.lsn),
                    ));
                }
            }
            continue;
        }
        if b.lsn != next {
            return Err(SqlError::new(
                1412,
                16,
                format!(
                    "The log of database '{}' has a gap: expected LSN {next}, received {}.",
                    target.name, b.lsn
                ),
            ));
        }
        next += 1;
        blocks.push(b);
    }
    let hardened = target.harden_replica(&blocks)?;
    Ok((hardened, blocks))
}
