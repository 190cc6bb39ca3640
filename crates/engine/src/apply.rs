//! Apply log blocks to a database as raw pages. Two ways, same bytes:
//! - live, through `sqlite_dbpage` as one SQLite transaction (RESTORE LOG, the secondary's redo), so readers on
//!   other connections see whole transactions;
//! - at crash recovery, straight into the file: a checkpoint killed mid-copy leaves a file SQLite cannot even
//!   parse, so recovery must not go through SQLite.

use crate::error::Result;
use crate::log::format::Block;
use rusqlite::Connection;

/// Write a sequence of blocks as ONE SQLite transaction: readers on other connections see all or none of it.
pub fn apply_blocks<'a>(
    conn: &Connection,
    blocks: impl IntoIterator<Item = &'a Block>,
) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let res = (|| -> Result<()> {
        let mut last_size = None;
        {
            let mut ins =
                conn.prepare_cached("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)")?;
            for b in blocks {
                for (pgno, page) in b.pages() {
                    ins.execute(rusqlite::params![pgno, page])?;
                }
                last_size = Some(b.db_pages);
            }
        }
        if let Some(size) = last_size {
            let current: u32 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            if size > 0 && size < current {
                // A NULL page truncates the file from that page on (VACUUM shrank the database).
                conn.execute(
                    "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, NULL)",
                    [size + 1],
                )?;
            }
        }
        Ok(())
    })();
    match res {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Crash recovery: write every page of `blocks` (in LSN order) at its offset, then size the file to the last
/// block's page count and fsync. The WAL must already be gone and nobody may have the file open.
pub fn redo_into_file(
    path: &std::path::Path,
    page_size: u32,
    blocks: impl Iterator<Item = Result<Block>>,
) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let ps = page_size as u64;
    let mut last_size = None;
    let mut n = 0;
    for b in blocks {
        let b = b?;
        for (pgno, page) in b.pages() {
            f.write_all_at(page, (pgno as u64 - 1) * ps)?;
        }
        last_size = Some(b.db_pages);
        n += 1;
    }
    if let Some(size) = last_size {
        f.set_len(size as u64 * ps)?;
    }
    f.sync_all()?;
    Ok(n)
}
