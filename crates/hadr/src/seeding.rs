//! Automatic seeding: a fuzzy page copy of a live database taken from start LSN S (the durable end of its log),
//! read in short read transactions so writers are never blocked, followed by redo of every block after S on the
//! target. Full page images make the redo idempotent, so pages copied "too late" are simply overwritten. The
//! source holds its log from S on (persisted), so no truncation can break a seeding, however long it is stalled.
//! Never the SQLite backup API: it rewrites header fields and would break byte identity.

use engine::database::DbConn;
use engine::{Database, Result, SqlError};
use std::sync::Arc;

/// Page images by page number.
pub type Pages = Vec<(u32, Vec<u8>)>;

pub struct SeedSource {
    db: Arc<Database>,
    conn: DbConn,
    pub start_lsn: u64,
    hold: String,
}

impl SeedSource {
    /// Begin seeding `target` (a name identifying the replica), or resume one that already holds its start LSN.
    pub fn begin(db: &Arc<Database>, target: &str) -> Result<SeedSource> {
        let hold = format!("seeding:{target}");
        let start_lsn = match db.log_holds().into_iter().find(|(w, _)| *w == hold) {
            Some((_, keep_from)) => keep_from - 1,
            None => {
                let s = db.log().durable_lsn();
                db.hold_log(&hold, s + 1);
                s
            }
        };
        Ok(SeedSource {
            db: db.clone(),
            conn: db.connect()?,
            start_lsn,
            hold,
        })
    }

    pub fn page_size(&self) -> u32 {
        self.db.control().page_size
    }

    /// Up to `max` pages from `from` on, read in one short read transaction; also the current page count.
    pub fn read_chunk(&mut self, from: u32, max: u32) -> Result<(u32, Pages)> {
        self.conn.begin_read()?;
        let r = (|| -> Result<(u32, Pages)> {
            let c = self.conn.sqlite();
            let count: u32 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let mut st = c.prepare_cached("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")?;
            let mut pages = Vec::new();
            let end = from.saturating_add(max).min(count.saturating_add(1));
            for pgno in from.max(1)..end {
                let data: Vec<u8> = st.query_row([pgno], |r| r.get(0))?;
                pages.push((pgno, data));
            }
            Ok((count, pages))
        })();
        self.conn.end_read()?;
        r
    }

    /// The log's durable end now: redo on the target must reach it before the copy is consistent.
    pub fn end_lsn(&self) -> u64 {
        self.db.log().durable_lsn()
    }

    /// Seeding is over (the replica's own hold takes over the log from here).
    pub fn finish(self) -> Result<()> {
        self.db.release_log(&self.hold)
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }
}

/// Progress a seeding reports (for sys.dm_hadr_physical_seeding_stats).
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedProgress {
    pub transferred_bytes: u64,
    pub database_bytes: u64,
    pub next_page: u32,
}

/// Copy pages from `source` into the seeding `target` from `target`'s resume point, `chunk` pages at a time,
/// reporting progress; stops early (resumable) when `keep_going` says so. Returns the copy's end LSN when done.
pub fn copy_pages(
    source: &mut SeedSource,
    target: &Arc<Database>,
    chunk: u32,
    mut progress: impl FnMut(SeedProgress) -> bool,
) -> Result<Option<(u64, u32)>> {
    let c = target.control();
    if c.consistent_at.is_none() {
        return Err(SqlError::new(
            1475,
            16,
            format!("Database '{}' is not waiting for seeding.", target.name),
        ));
    }
    let ps = c.page_size as u64;
    let mut next = c.seed_next_page.max(1);
    let mut sent = 0u64;
    loop {
        let (count, pages) = source.read_chunk(next, chunk)?;
        if pages.is_empty() {
            let end = source.end_lsn();
            target.seed_copy_done(end, count)?;
            return Ok(Some((end, count)));
        }
        sent += pages.len() as u64 * ps;
        next = pages.last().map(|p| p.0 + 1).unwrap_or(next);
        target.seed_write_pages(&pages)?;
        target.seed_checkpoint(next)?;
        if !progress(SeedProgress {
            transferred_bytes: sent,
            database_bytes: count as u64 * ps,
            next_page: next,
        }) {
            return Ok(None);
        }
    }
}
