//! SQLite WAL snapshots (SQLITE_ENABLE_SNAPSHOT): readers begin on the last DURABLE state, never on commits whose
//! log block is not yet fsynced.

use crate::error::{Result, SqlError};
use rusqlite::{ffi, Connection};

/// Transaction control on the hot path through the statement cache (no re-parse per commit).
pub fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

pub struct Snapshot(*mut ffi::sqlite3_snapshot);

// The snapshot is an immutable copy of the WAL-index header; SQLite only reads it.
unsafe impl Send for Snapshot {}
unsafe impl Sync for Snapshot {}

impl Drop for Snapshot {
    fn drop(&mut self) {
        unsafe { ffi::sqlite3_snapshot_free(self.0) }
    }
}

/// The connection's current committed state (it must not be inside a transaction).
pub fn take(conn: &Connection) -> Result<Snapshot> {
    exec_cached(conn, "BEGIN")?;
    let mut p: *mut ffi::sqlite3_snapshot = std::ptr::null_mut();
    // A read is needed so that the transaction really holds a read lock on the WAL.
    let _ = conn
        .prepare_cached("SELECT 1 FROM sqlite_master LIMIT 1")
        .and_then(|mut st| st.query_row([], |_| Ok(())));
    let rc = unsafe { ffi::sqlite3_snapshot_get(conn.handle(), c"main".as_ptr(), &mut p) };
    exec_cached(conn, "COMMIT")?;
    if rc != ffi::SQLITE_OK {
        return Err(SqlError::new(
            50000,
            16,
            format!("sqlite3_snapshot_get failed ({rc})"),
        ));
    }
    Ok(Snapshot(p))
}

#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The snapshot is gone (the WAL was restarted by a checkpoint): wait for the next published one.
    Stale,
    Other(i32),
}

/// Begin a read transaction on `snap`. On success the connection is inside `BEGIN`.
pub fn begin_at(conn: &Connection, snap: &Snapshot) -> Result<std::result::Result<(), OpenError>> {
    exec_cached(conn, "BEGIN")?;
    let rc = unsafe { ffi::sqlite3_snapshot_open(conn.handle(), c"main".as_ptr(), snap.0) };
    if rc == ffi::SQLITE_OK {
        return Ok(Ok(()));
    }
    conn.execute_batch("ROLLBACK")?;
    if rc == ffi::SQLITE_ERROR | (3 << 8) || rc == ffi::SQLITE_BUSY {
        return Ok(Err(OpenError::Stale));
    }
    Ok(Err(OpenError::Other(rc)))
}
