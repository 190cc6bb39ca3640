//! Apply log blocks to a database file as raw pages through `sqlite_dbpage`: the one path used by crash recovery,
//! restore and (later) the secondary's redo, so all three produce byte-identical files.

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
