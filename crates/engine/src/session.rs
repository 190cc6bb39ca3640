//! A session: the current database, the transaction nesting (@@TRANCOUNT), isolation, LOCK_TIMEOUT and
//! cancellation, and the execution of one translated SQLite statement under the engine's rules.
//!
//! Isolation is snapshot-based: a statement outside a write transaction reads the latest durable snapshot
//! (READ COMMITTED semantics); under SNAPSHOT isolation a transaction keeps its first snapshot and a write after
//! someone else's commit fails with 3960. A transaction takes the database's single writer at its first write.

use crate::database::{next_session_id, DbConn, WriteWait};
use crate::error::{Result, SqlError};
use crate::instance::Instance;
use parking_lot::Mutex;
use rusqlite::types::{Value, ValueRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    Snapshot,
}

/// Column of a result set: name and SQLite's declared type (the SQL layer maps it to a T-SQL type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    pub decl_type: Option<String>,
}

/// Where result rows go: the TDS layer streams them; tests collect them.
pub trait RowSink {
    fn columns(&mut self, cols: &[ColumnInfo]) -> Result<()>;
    fn row(&mut self, row: Vec<Value>) -> Result<()>;
}

/// Collects a result set in memory.
#[derive(Debug, Default, Clone)]
pub struct Collect {
    pub columns: Vec<ColumnInfo>,
    pub rows: Vec<Vec<Value>>,
}

impl RowSink for Collect {
    fn columns(&mut self, cols: &[ColumnInfo]) -> Result<()> {
        self.columns = cols.to_vec();
        Ok(())
    }
    fn row(&mut self, row: Vec<Value>) -> Result<()> {
        self.rows.push(row);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub rows: u64,
    pub changes: u64,
    pub last_insert_rowid: i64,
    /// LSN of the block this statement committed (autocommit writes only).
    pub lsn: Option<u64>,
}

/// Interrupts whatever the session is doing (TDS ATTENTION).
#[derive(Clone)]
pub struct CancelHandle {
    flag: Arc<AtomicBool>,
    current: Arc<Mutex<Option<rusqlite::InterruptHandle>>>,
}

impl CancelHandle {
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(h) = self.current.lock().as_ref() {
            h.interrupt();
        }
    }
}

/// Run on every connection a session opens (the SQL layer registers its session-bound functions).
pub type ConnInit = Arc<dyn Fn(&rusqlite::Connection) -> rusqlite::Result<()> + Send + Sync>;

pub struct Session {
    pub id: u64,
    conn_init: Option<ConnInit>,
    inst: Arc<Instance>,
    database: Option<String>,
    conns: HashMap<String, DbConn>,
    trancount: u32,
    /// The database whose writer this session's transaction holds.
    xact_db: Option<String>,
    pub isolation: Isolation,
    /// LOCK_TIMEOUT; None waits forever (-1).
    pub lock_timeout: Option<Duration>,
    cancel: CancelHandle,
}

impl Session {
    pub fn new(inst: Arc<Instance>) -> Session {
        Session {
            id: next_session_id(),
            conn_init: None,
            inst,
            database: None,
            conns: HashMap::new(),
            trancount: 0,
            xact_db: None,
            isolation: Isolation::ReadCommitted,
            lock_timeout: None,
            cancel: CancelHandle {
                flag: Arc::new(AtomicBool::new(false)),
                current: Arc::new(Mutex::new(None)),
            },
        }
    }

    pub fn instance(&self) -> &Arc<Instance> {
        &self.inst
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Clear a previous cancellation before the next request runs.
    pub fn reset_cancel(&self) {
        self.cancel.flag.store(false, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.flag.load(Ordering::SeqCst)
    }

    pub fn set_conn_init(&mut self, init: ConnInit) {
        self.conn_init = Some(init);
    }

    /// The session's own SQLite connection to `db`, for its TEMP schema only (system views materialised per
    /// query): writes there touch no database file, so they bypass the writer and the log.
    pub fn temp_connection(&mut self, db: &str) -> Result<&rusqlite::Connection> {
        Ok(self.conn(db)?.sqlite())
    }

    /// USE: None is master.
    pub fn use_database(&mut self, name: Option<&str>) -> Result<()> {
        match name {
            None => self.database = None,
            Some(n) if n.eq_ignore_ascii_case("master") => self.database = None,
            Some(n) => {
                let db = self.inst.database(n)?;
                self.database = Some(db.name.clone());
            }
        }
        Ok(())
    }

    pub fn current_database(&self) -> &str {
        self.database.as_deref().unwrap_or("master")
    }

    pub fn trancount(&self) -> u32 {
        self.trancount
    }

    pub fn begin_tran(&mut self) {
        self.trancount += 1;
    }

    /// COMMIT TRAN: only the outermost commit makes anything durable. Returns the LSN if one was written.
    pub fn commit_tran(&mut self) -> Result<Option<u64>> {
        if self.trancount == 0 {
            return Err(SqlError::new(
                3902,
                16,
                "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
            ));
        }
        self.trancount -= 1;
        if self.trancount > 0 {
            return Ok(None);
        }
        self.finish(true)
    }

    /// ROLLBACK TRAN: always rolls back everything, as in SQL Server.
    pub fn rollback_tran(&mut self) -> Result<()> {
        if self.trancount == 0 {
            return Err(SqlError::new(
                3903,
                16,
                "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.",
            ));
        }
        self.trancount = 0;
        self.finish(false).map(|_| ())
    }

    fn finish(&mut self, commit: bool) -> Result<Option<u64>> {
        let id = self.id;
        let mut lsn = None;
        let mut first_err = None;
        self.xact_db = None;
        for c in self.conns.values_mut() {
            let r = if commit {
                c.commit(id).map(|l| lsn = lsn.or(l))
            } else {
                c.rollback(id)
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(lsn),
        }
    }

    fn conn(&mut self, db: &str) -> Result<&mut DbConn> {
        let key = db.to_lowercase();
        let stale = self.conns.get(&key).is_some_and(|c| {
            // The database was dropped or restored under us: reconnect.
            self.inst
                .database(db)
                .map(|d| !Arc::ptr_eq(&d, c.database()))
                .unwrap_or(true)
        });
        if stale {
            self.conns.remove(&key);
        }
        if !self.conns.contains_key(&key) {
            let d = self.inst.database(db)?;
            let c = d.connect()?;
            if let Some(init) = &self.conn_init {
                init(c.sqlite())?;
            }
            self.conns.insert(key.clone(), c);
        }
        Ok(self.conns.get_mut(&key).expect("inserted"))
    }

    /// Run one SQLite statement in the current database.
    pub fn execute(
        &mut self,
        sql: &str,
        params: &[Value],
        sink: &mut dyn RowSink,
    ) -> Result<Outcome> {
        let db = match &self.database {
            Some(d) => d.clone(),
            None => {
                return Err(SqlError::new(
                    50000,
                    16,
                    "This statement needs a user database: the master database holds only instance-level objects here. Run USE <database> first.",
                ))
            }
        };
        self.execute_in(&db, sql, params, sink)
    }

    pub fn execute_in(
        &mut self,
        db: &str,
        sql: &str,
        params: &[Value],
        sink: &mut dyn RowSink,
    ) -> Result<Outcome> {
        if self.is_cancelled() {
            return Err(SqlError::cancelled());
        }
        let id = self.id;
        let trancount = self.trancount;
        let snapshot_iso = self.isolation == Isolation::Snapshot;
        let timeout = self.lock_timeout;
        let flag = self.cancel.flag.clone();
        let current = self.cancel.current.clone();
        let xact_db = self.xact_db.clone();
        let conn = self.conn(db)?;
        *current.lock() = Some(conn.interrupt_handle());
        let readonly = conn.sqlite().prepare_cached(sql)?.readonly();

        if readonly && !conn.in_write() {
            let own = !conn.in_read();
            conn.begin_read()?;
            let r = run(conn, sql, params, sink, true);
            if own && !(trancount > 0 && snapshot_iso) {
                conn.end_read()?;
            }
            return r;
        }

        if !conn.in_write() {
            if let Some(other) = xact_db.filter(|x| !x.eq_ignore_ascii_case(db)) {
                return Err(SqlError::new(
                    3915,
                    16,
                    format!("A transaction that writes to database '{other}' cannot also write to '{db}': distributed transactions are not supported."),
                ));
            }
            if conn.in_read() && !(trancount > 0 && snapshot_iso) {
                conn.end_read()?;
            }
            conn.begin_write(&WriteWait {
                session: id,
                timeout,
                cancel: &flag,
                explicit: trancount > 0,
            })?;
            if trancount > 0 {
                self.xact_db = Some(db.to_string());
            }
        }
        let conn = self.conns.get_mut(&db.to_lowercase()).expect("connected");
        if trancount > 0 {
            return run(conn, sql, params, sink, false).map_err(|e| busy_to_conflict(e, db));
        }
        // Autocommit: hold the statement's rows until its block is durable, so no client sees a lost write.
        let mut held = Collect::default();
        match run(conn, sql, params, &mut held, false) {
            Ok(mut o) => {
                o.lsn = conn.commit(id)?;
                if !held.columns.is_empty() {
                    sink.columns(&held.columns)?;
                    for r in held.rows {
                        sink.row(r)?;
                    }
                }
                Ok(o)
            }
            Err(e) => {
                conn.rollback(id)?;
                Err(busy_to_conflict(e, db))
            }
        }
    }

    /// Convenience for tests and tools: run and collect.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Collect> {
        let mut c = Collect::default();
        self.execute(sql, params, &mut c)?;
        Ok(c)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.trancount > 0 {
            let _ = self.finish(false);
        }
    }
}

fn busy_to_conflict(e: SqlError, db: &str) -> SqlError {
    if e.message.contains("database is locked") || e.message.contains("busy") {
        SqlError::snapshot_conflict(db)
    } else {
        e
    }
}

fn run(
    conn: &mut DbConn,
    sql: &str,
    params: &[Value],
    sink: &mut dyn RowSink,
    readonly: bool,
) -> Result<Outcome> {
    let c = conn.sqlite();
    let mut stmt = c.prepare_cached(sql)?;
    let ncols = stmt.column_count();
    if ncols > 0 {
        let cols: Vec<ColumnInfo> = stmt
            .columns()
            .map(|col| ColumnInfo {
                name: col.name().to_string(),
                decl_type: col.decl_type().map(str::to_string),
            })
            .collect();
        sink.columns(&cols)?;
    }
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let mut v = Vec::with_capacity(ncols);
        for i in 0..ncols {
            v.push(match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(x) => Value::Integer(x),
                ValueRef::Real(x) => Value::Real(x),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        sink.row(v)?;
        n += 1;
    }
    drop(rows);
    let changes = if readonly { 0 } else { c.changes() };
    Ok(Outcome {
        rows: n,
        changes,
        last_insert_rowid: c.last_insert_rowid(),
        lsn: None,
    })
}
