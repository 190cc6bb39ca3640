//! The batch executor: one [`Conn`] per client session.

use crate::values::{from_sqlite, natural_type, to_sqlite};
use crate::{admin, sysviews};
use engine::{Instance, Session};
use parking_lot::Mutex;
use rusqlite::types::Value as Sqlite;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tsql::ast::{
    AssignOp, Declaration, Exec, ExecArg, OptionValue, ProcTarget, Query, Select, SelectItem,
    SetExpr, Statement, StatementKind,
};
use tsql::translate::{Translation, TranslationKind};
use tsql::types::Len;
use tsql::{DataType, SqlError, Value};

/// What a batch produces, in order; the endpoint turns each item into TDS tokens.
#[derive(Debug, Clone)]
pub enum Out {
    Columns(Vec<(String, DataType)>),
    Row(Vec<Value>),
    /// End of one statement; Some(n) = rows affected/returned.
    Done(Option<u64>),
    /// End of an INSERT/UPDATE/DELETE: rows affected and the TDS CurCmd (ODBC reports the count only for DML).
    DoneDml(u64, u16),
    Info(i32, String),
    /// PRINT and RAISERROR with severity <= 10: number, severity, state and line of an informational message.
    Message(SqlError),
    Error(SqlError),
    Database(String),
    TranBegin,
    TranCommit,
    TranRollback,
    ReturnStatus(i32),
}

/// Instance-wide facts sessions share.
pub struct Server {
    pub inst: Arc<Instance>,
    pub name: String,
    pub host: String,
    pub managed: bool,
    /// Live sessions, for sys.dm_exec_sessions.
    pub sessions: Mutex<HashMap<i32, SessionInfo>>,
    trust: std::sync::OnceLock<Result<trust::TrustStore, String>>,
    /// Live links by database (lower-case), for the HADR views.
    pub links: Mutex<HashMap<String, hadr::link::Stats>>,
    /// Secondary link sessions this instance runs, by distributed group (lower-case).
    pub joins: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub login: String,
    pub login_time: chrono::NaiveDateTime,
    pub shared: Arc<Mutex<Shared>>,
}

impl Server {
    pub fn new(inst: Arc<Instance>, name: &str, host: &str, managed: bool) -> Arc<Server> {
        Arc::new(Server {
            inst,
            name: name.into(),
            host: host.into(),
            managed,
            sessions: Mutex::new(HashMap::new()),
            trust: std::sync::OnceLock::new(),
            links: Mutex::new(HashMap::new()),
            joins: Mutex::new(HashMap::new()),
        })
    }

    /// The instance's trust store (master key, certificates), opened on first use.
    pub fn trust(&self) -> Result<&trust::TrustStore, SqlError> {
        self.trust
            .get_or_init(|| {
                trust::TrustStore::open(&self.inst.master(), self.inst.data_dir())
                    .map_err(|e| e.message)
            })
            .as_ref()
            .map_err(|m| SqlError::new(15581, 16, format!("The trust store cannot be opened: {m}")))
    }

    pub fn version_string(&self) -> String {
        format!(
            "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) milink {} on Linux (SQLite {})",
            env!("CARGO_PKG_VERSION"),
            rusqlite::version()
        )
    }
}

/// Session state that SQLite functions registered on the session's connections also read.
#[derive(Default, Debug)]
pub struct Shared {
    pub identity: Option<i64>,
    pub database: String,
    pub spid: i32,
    pub login: String,
    pub server_name: String,
    pub host: String,
    pub error: Option<SqlError>,
}

#[derive(Clone)]
struct Var {
    ty: DataType,
    value: Value,
}

enum Flow {
    Normal,
    Break,
    Continue,
    Return(i32),
}

pub struct Conn {
    pub server: Arc<Server>,
    pub session: Session,
    pub shared: Arc<Mutex<Shared>>,
    scopes: Vec<HashMap<String, Var>>,
    rowcount: i64,
    error: i32,
    nocount: bool,
    xact_abort: bool,
    implicit_transactions: bool,
    prepared: HashMap<i32, (String, String)>,
    next_handle: i32,
    /// Master context: no user database; system views and FROM-less queries run here.
    mem: rusqlite::Connection,
    /// Declared T-SQL types of the current database's tables, loaded per batch.
    catalog: Option<HashMap<String, TableInfo>>,
    depth: usize,
    /// The error aborting the batch was already sent: outer blocks only unwind.
    reported: bool,
    /// SET ROWCOUNT n (0: no limit).
    row_limit: u64,
}

#[derive(Clone, Debug)]
pub struct TableInfo {
    pub columns: Vec<(String, DataType)>,
    pub identity: Option<String>,
}

const META_TABLE: &str = "__milink_columns";

impl Conn {
    pub fn new(server: Arc<Server>, spid: i32, login: &str) -> Result<Conn, SqlError> {
        let shared = Arc::new(Mutex::new(Shared {
            identity: None,
            database: "master".into(),
            spid,
            login: login.to_string(),
            server_name: server.name.clone(),
            host: server.host.clone(),
            error: None,
        }));
        let mut session = Session::new(server.inst.clone());
        let sh = shared.clone();
        let srv = server.clone();
        session.set_conn_init(Arc::new(move |c| {
            register_functions(c, sh.clone(), srv.clone())
        }));
        server.sessions.lock().insert(
            spid,
            SessionInfo {
                login: login.to_string(),
                login_time: chrono::Local::now().naive_local(),
                shared: shared.clone(),
            },
        );
        let mem = rusqlite::Connection::open_in_memory().map_err(engine_err)?;
        engine::collation::register(&mem).map_err(engine_err)?;
        register_functions(&mem, shared.clone(), server.clone()).map_err(engine_err)?;
        Ok(Conn {
            server,
            session,
            shared,
            scopes: vec![HashMap::new()],
            rowcount: 0,
            error: 0,
            nocount: false,
            xact_abort: false,
            implicit_transactions: false,
            prepared: HashMap::new(),
            next_handle: 1,
            mem,
            catalog: None,
            depth: 0,
            reported: false,
            row_limit: 0,
        })
    }

    pub fn database(&self) -> String {
        self.session.current_database().to_string()
    }

    pub fn in_transaction(&self) -> bool {
        self.session.trancount() > 0
    }

    pub fn cancel_handle(&self) -> engine::session::CancelHandle {
        self.session.cancel_handle()
    }

    /// sp_reset_connection: back to the login's state.
    pub fn reset(&mut self, keep_transaction: bool) {
        if !keep_transaction && self.session.trancount() > 0 {
            let _ = self.session.rollback_tran();
        }
        self.scopes = vec![HashMap::new()];
        self.row_limit = 0;
        // sp_reset_connection also clears @@ROWCOUNT, @@ERROR, @@IDENTITY and prepared handles.
        self.rowcount = 0;
        self.error = 0;
        self.shared.lock().identity = None;
        self.prepared.clear();
        self.nocount = false;
        self.xact_abort = false;
        self.implicit_transactions = false;
        self.session.lock_timeout = None;
        self.session.isolation = engine::session::Isolation::ReadCommitted;
    }

    pub fn use_database(&mut self, name: &str) -> Result<(), SqlError> {
        self.session
            .use_database(Some(name))
            .map_err(engine_err_sql)?;
        self.shared.lock().database = self.database();
        self.catalog = None;
        Ok(())
    }

    /// Run a batch; everything it produces goes to `out`.
    pub fn execute_batch(&mut self, sql: &str, out: &mut Vec<Out>) {
        self.session.reset_cancel();
        self.catalog = None;
        self.reported = false;
        let stmts = match tsql::parse_batch(sql) {
            Ok(s) => s,
            Err(e) => {
                out.push(Out::Error(e));
                return;
            }
        };
        let _ = self.run_block(&stmts, out, false);
    }

    /// Run statements; in TRY, the first error propagates instead of being reported.
    fn run_block(
        &mut self,
        stmts: &[Statement],
        out: &mut Vec<Out>,
        in_try: bool,
    ) -> Result<Flow, SqlError> {
        for st in stmts {
            if self.session.is_cancelled() {
                return Err(SqlError::new(3617, 25, "The query was cancelled."));
            }
            match self.run_statement(st, out, in_try) {
                Ok(Flow::Normal) => {}
                Ok(f) => return Ok(f),
                Err(e) => {
                    let e = e.at_line(st.line);
                    self.error = e.number;
                    if e.number == 3617 {
                        return Err(e);
                    }
                    if self.reported {
                        // An inner block (IF, WHILE, BEGIN…END, EXEC) reported it and is aborting the batch.
                        return Err(e);
                    }
                    if in_try {
                        return Err(e);
                    }
                    out.push(Out::Error(e.clone()));
                    if self.xact_abort && self.session.trancount() > 0 {
                        let _ = self.session.rollback_tran();
                        out.push(Out::TranRollback);
                        self.reported = true;
                        return Err(e);
                    }
                    if batch_aborting(&e) {
                        self.reported = true;
                        return Err(e);
                    }
                }
            }
        }
        Ok(Flow::Normal)
    }

    fn run_statement(
        &mut self,
        st: &Statement,
        out: &mut Vec<Out>,
        in_try: bool,
    ) -> Result<Flow, SqlError> {
        self.error = 0;
        if matches!(
            st.kind,
            StatementKind::If { .. }
                | StatementKind::While { .. }
                | StatementKind::SetVariable { .. }
                | StatementKind::Declare(_)
                | StatementKind::Query(_)
        ) {
            // OBJECT_ID() and friends read the catalog (loaded once per batch).
            self.load_catalog()?;
        }
        match &st.kind {
            StatementKind::Declare(decls) => {
                for d in decls {
                    match d {
                        Declaration::Scalar { name, ty, init } => {
                            let value = match init {
                                Some(e) => tsql::value::assign(&self.eval(e)?, ty)?,
                                None => Value::Null,
                            };
                            self.scopes
                                .last_mut()
                                .expect("scope")
                                .insert(name.to_lowercase(), Var { ty: *ty, value });
                        }
                        Declaration::Table { .. } => {
                            return Err(SqlError::unsupported("table variables", st.line))
                        }
                    }
                }
                Ok(Flow::Normal)
            }
            StatementKind::SetVariable { name, op, value } => {
                let v = self.eval(value)?;
                self.assign(name, *op, v)?;
                Ok(Flow::Normal)
            }
            StatementKind::SetOption(o) => {
                self.set_option(o)?;
                Ok(Flow::Normal)
            }
            StatementKind::If { cond, then, else_ } => {
                let c = self.predicate(cond)?;
                if c == Some(true) {
                    self.run_block(std::slice::from_ref(then), out, in_try)
                } else if let Some(e) = else_ {
                    self.run_block(std::slice::from_ref(e), out, in_try)
                } else {
                    Ok(Flow::Normal)
                }
            }
            StatementKind::While { cond, body } => {
                let mut guard = 0u64;
                while self.predicate(cond)? == Some(true) {
                    guard += 1;
                    if self.session.is_cancelled() {
                        return Err(SqlError::new(3617, 25, "The query was cancelled."));
                    }
                    match self.run_block(std::slice::from_ref(body), out, in_try)? {
                        Flow::Break => break,
                        Flow::Return(r) => return Ok(Flow::Return(r)),
                        _ => {}
                    }
                    let _ = guard;
                }
                Ok(Flow::Normal)
            }
            StatementKind::Block(b) => self.run_block(b, out, in_try),
            StatementKind::TryCatch {
                try_block,
                catch_block,
            } => match self.run_block(try_block, out, true) {
                Ok(f) => Ok(f),
                Err(e) if e.number == 3617 => Err(e),
                Err(e) => {
                    self.reported = false;
                    self.shared.lock().error = Some(e);
                    let r = self.run_block(catch_block, out, in_try);
                    self.shared.lock().error = None;
                    r
                }
            },
            StatementKind::Break => Ok(Flow::Break),
            StatementKind::Continue => Ok(Flow::Continue),
            StatementKind::Return(e) => {
                let v = match e {
                    Some(e) => self.eval(e)?.as_i64().unwrap_or(0) as i32,
                    None => 0,
                };
                Ok(Flow::Return(v))
            }
            StatementKind::Print(e) => {
                let v = self.eval(e)?;
                let mut m = SqlError::new(0, 0, display(&v));
                m.line = st.line;
                out.push(Out::Message(m));
                Ok(Flow::Normal)
            }
            StatementKind::Raiserror(r) => {
                let msg = self.eval(&r.message)?;
                let sev = self.eval(&r.severity)?.as_i64().unwrap_or(16).clamp(0, 25) as u8;
                let state = self.eval(&r.state)?.as_i64().unwrap_or(1).clamp(0, 255) as u8;
                let mut args = Vec::new();
                for a in &r.args {
                    args.push(self.eval(a)?);
                }
                let (number, text) = match &msg {
                    Value::Int(n) => (*n, format!("Error {n} was raised.")),
                    v => (50000, format_message(&display(v), &args)),
                };
                if sev <= 10 {
                    let mut m = SqlError::new(number, sev, text);
                    m.state = state;
                    m.line = st.line;
                    out.push(Out::Message(m));
                    return Ok(Flow::Normal);
                }
                let mut e = SqlError::new(number, sev, text);
                e.state = state;
                Err(e)
            }
            StatementKind::Throw(t) => match t {
                None => Err(self.shared.lock().error.clone().unwrap_or_else(|| {
                    SqlError::new(
                        10704,
                        15,
                        "To rethrow an error, a THROW statement must be used inside a CATCH block.",
                    )
                })),
                Some(t) => {
                    let n = self.eval(&t.number)?.as_i64().unwrap_or(50000) as i32;
                    let m = display(&self.eval(&t.message)?);
                    let s = self.eval(&t.state)?.as_i64().unwrap_or(1) as u8;
                    let mut e = SqlError::new(n, 16, m);
                    e.state = s;
                    Err(e)
                }
            },
            StatementKind::BeginTran { .. } => {
                let was = self.session.trancount();
                self.session.begin_tran();
                if was == 0 {
                    out.push(Out::TranBegin);
                }
                Ok(Flow::Normal)
            }
            StatementKind::Commit { .. } => {
                self.session.commit_tran().map_err(engine_err_sql)?;
                if self.session.trancount() == 0 {
                    out.push(Out::TranCommit);
                }
                Ok(Flow::Normal)
            }
            StatementKind::Rollback { .. } => {
                self.session.rollback_tran().map_err(engine_err_sql)?;
                out.push(Out::TranRollback);
                Ok(Flow::Normal)
            }
            StatementKind::SaveTran { .. } => Ok(Flow::Normal),
            StatementKind::Use(db) => {
                self.use_database(&db.value)?;
                out.push(Out::Database(self.database()));
                out.push(Out::Info(
                    5701,
                    format!("Changed database context to '{}'.", self.database()),
                ));
                Ok(Flow::Normal)
            }
            StatementKind::Exec(e) => self.exec_proc(e, out),
            StatementKind::ExecString(parts) => {
                let mut sql = String::new();
                for p in parts {
                    sql.push_str(&display(&self.eval(p)?));
                }
                self.nested_batch(&sql, HashMap::new(), out)?;
                Ok(Flow::Normal)
            }
            StatementKind::WaitFor { delay, time } => {
                if *delay {
                    let v = display(&self.eval(time)?);
                    let secs = parse_hms(&v).unwrap_or(0.0);
                    let end = std::time::Instant::now() + Duration::from_secs_f64(secs);
                    while std::time::Instant::now() < end {
                        if self.session.is_cancelled() {
                            return Err(SqlError::new(3617, 25, "The query was cancelled."));
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                Ok(Flow::Normal)
            }
            StatementKind::Grant { .. } => Ok(Flow::Normal),
            StatementKind::Admin(a) => {
                admin::run(self, a, st.line, out)?;
                Ok(Flow::Normal)
            }
            StatementKind::Query(q) => {
                if let Some(rows) = self.try_scalar_select(q, out)? {
                    self.rowcount = rows as i64;
                    self.done(out, Some(rows));
                    return Ok(Flow::Normal);
                }
                self.run_translated(st, out)
                    .map_err(|e| self.constraint_error(e))
            }
            StatementKind::CreateProcedure { .. } | StatementKind::DropProcedure { .. } => {
                Err(SqlError::unsupported("stored procedures", st.line))
            }
            _ => {
                let update = matches!(st.kind, StatementKind::Update(_));
                self.run_translated(st, out).map_err(|e| {
                    let e = self.constraint_error(e);
                    if update && e.number == 515 {
                        let m = e.message.replace("INSERT fails.", "UPDATE fails.");
                        SqlError { message: m, ..e }
                    } else if e.number == 547 {
                        self.conflict_error(e, &st.kind)
                    } else {
                        e
                    }
                })
            }
        }
    }

    /// 547 in SQL Server's words: which statement, constraint, database, table and column.
    fn conflict_error(&mut self, e: SqlError, kind: &StatementKind) -> SqlError {
        let table_of = |tf: &tsql::ast::TableFactor| match tf {
            tsql::ast::TableFactor::Table { name, .. } => Some(name.name().to_string()),
            _ => None,
        };
        let (verb, table) = match kind {
            StatementKind::Insert(i) => ("INSERT", Some(i.table.name().to_string())),
            StatementKind::Update(u) => ("UPDATE", table_of(&u.table)),
            StatementKind::Delete(d) => ("DELETE", table_of(&d.table)),
            _ => return e,
        };
        let Some(table) = table else { return e };
        let db = self.database();
        let text = |v: &Sqlite| match v {
            Sqlite::Text(t) => t.clone(),
            _ => String::new(),
        };
        let message = if e.message.contains("FOREIGN KEY") {
            if verb == "DELETE" {
                format!("The DELETE statement conflicted with the REFERENCE constraint. The conflict occurred in database \"{db}\", table \"dbo.{table}\".")
            } else {
                let fks = self
                    .session
                    .query(
                        "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
                        &[Sqlite::Text(table.clone())],
                    )
                    .map(|r| r.rows)
                    .unwrap_or_default();
                let ids: std::collections::BTreeSet<String> =
                    fks.iter().map(|r| format!("{:?}", r[0])).collect();
                match fks.first() {
                    Some(fk) if ids.len() == 1 => {
                        let parent = text(&fk[1]);
                        let to = match &fk[3] {
                            Sqlite::Null => "id".to_string(),
                            v => text(v),
                        };
                        format!(
                            "The {verb} statement conflicted with the FOREIGN KEY constraint \"FK_{table}_{parent}\". The conflict occurred in database \"{db}\", table \"dbo.{parent}\", column '{to}'."
                        )
                    }
                    _ => format!("The {verb} statement conflicted with a FOREIGN KEY constraint of table \"dbo.{table}\". The conflict occurred in database \"{db}\"."),
                }
            }
        } else if let Some(i) = e.message.find("CHECK constraint failed: ") {
            let expr = &e.message[i + "CHECK constraint failed: ".len()..];
            let column = expr
                .split('"')
                .nth(1)
                .map(|c| format!(", column '{c}'"))
                .unwrap_or_default();
            let name =
                if expr.trim_start().starts_with('(') || column.is_empty() && expr.contains(' ') {
                    format!("CK_{table}")
                } else {
                    expr.trim().to_string()
                };
            format!(
                "The {verb} statement conflicted with the CHECK constraint \"{name}\". The conflict occurred in database \"{db}\", table \"dbo.{table}\"{column}."
            )
        } else {
            return e;
        };
        SqlError { message, ..e }
    }

    /// SQLite's constraint messages ("UNIQUE constraint failed: t.k") in SQL Server's words.
    fn constraint_error(&mut self, e: SqlError) -> SqlError {
        let detail = |m: &str, what: &str| -> Option<(String, Vec<String>)> {
            let rest = &m[m.find(what)? + what.len()..];
            let mut table = String::new();
            let mut cols = Vec::new();
            for part in rest.split(',') {
                let (t, c) = part.trim().split_once('.')?;
                table = t.to_string();
                cols.push(c.trim().to_string());
            }
            Some((table, cols))
        };
        let pick = |q: &Result<engine::Collect, engine::SqlError>| -> Vec<Vec<String>> {
            q.as_ref()
                .map(|r| {
                    r.rows
                        .iter()
                        .map(|row| {
                            row.iter()
                                .map(|v| match v {
                                    Sqlite::Text(s) => s.clone(),
                                    Sqlite::Integer(i) => i.to_string(),
                                    _ => String::new(),
                                })
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        match e.number {
            2627 => {
                let Some((table, cols)) = detail(&e.message, "UNIQUE constraint failed: ") else {
                    return e;
                };
                let pk: Vec<String> = pick(&self.session.query(
                    "SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk",
                    &[Sqlite::Text(table.clone())],
                ))
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect();
                let same = |a: &[String]| {
                    a.len() == cols.len()
                        && a.iter().zip(&cols).all(|(x, y)| x.eq_ignore_ascii_case(y))
                };
                let message = if same(&pk) {
                    format!("Violation of PRIMARY KEY constraint 'PK_{table}'. Cannot insert duplicate key in object 'dbo.{table}'.")
                } else {
                    // A unique index made by CREATE UNIQUE INDEX (origin 'c') is error 2601.
                    let indexes = pick(&self.session.query(
                        "SELECT l.name, l.origin, group_concat(i.name, ',') FROM pragma_index_list(?1) l,                          pragma_index_info(l.name) i WHERE l.\"unique\" = 1 GROUP BY l.name",
                        &[Sqlite::Text(table.clone())],
                    ));
                    let named = indexes.iter().find(|r| {
                        r.len() == 3
                            && r[1] == "c"
                            && same(&r[2].split(',').map(str::to_string).collect::<Vec<_>>())
                    });
                    if let Some(ix) = named {
                        let mut x = SqlError::new(2601, 14, format!("Cannot insert duplicate key row in object 'dbo.{table}' with unique index '{}'.", ix[0]));
                        x.state = 1;
                        x.line = e.line;
                        return x;
                    }
                    format!(
                        "Violation of UNIQUE KEY constraint 'UQ_{table}_{}'. Cannot insert duplicate key in object 'dbo.{table}'.",
                        cols.join("_")
                    )
                };
                SqlError { message, ..e }
            }
            515 => {
                let Some((table, cols)) = detail(&e.message, "NOT NULL constraint failed: ") else {
                    return e;
                };
                let message = format!(
                    "Cannot insert the value NULL into column '{}', table '{}.dbo.{table}'; column does not allow nulls. INSERT fails.",
                    cols.join(", "),
                    self.database()
                );
                SqlError {
                    message,
                    state: 2,
                    ..e
                }
            }
            208 => {
                // "db.t": a table in another user database (no cross-database queries yet).
                let name = e
                    .message
                    .trim_start_matches("Invalid object name '")
                    .trim_end_matches("'.");
                match name.split_once('.') {
                    Some((db, table))
                        if !db.eq_ignore_ascii_case(&self.database())
                            && self.server.inst.database(db).is_ok() =>
                    {
                        SqlError {
                            number: 40000,
                            message: format!(
                                "Cross-database reference '{db}.dbo.{table}' is not supported by this server; USE {db} first."
                            ),
                            ..e
                        }
                    }
                    _ => e,
                }
            }
            _ => e,
        }
    }

    fn done(&mut self, out: &mut Vec<Out>, rows: Option<u64>) {
        out.push(Out::Done(if self.nocount { None } else { rows }));
    }

    /// SELECT without FROM: evaluated here, so it works in master and needs no SQLite.
    fn try_scalar_select(
        &mut self,
        q: &Query,
        out: &mut Vec<Out>,
    ) -> Result<Option<u64>, SqlError> {
        let SetExpr::Select(s) = &q.body else {
            return Ok(None);
        };
        let s: &Select = s;
        if !s.from.is_empty()
            || !q.ctes.is_empty()
            || s.into.is_some()
            || !s.group_by.is_empty()
            || s.having.is_some()
        {
            return Ok(None);
        }
        if let Some(w) = &s.selection {
            if self.predicate(w)? != Some(true) {
                if s.items
                    .iter()
                    .all(|i| matches!(i, SelectItem::Assign { .. }))
                {
                    return Ok(Some(0));
                }
                return Ok(None);
            }
        }
        let mut cols = Vec::new();
        let mut row = Vec::new();
        let mut assigns = Vec::new();
        for item in &s.items {
            match item {
                SelectItem::Expr { expr, alias } => {
                    let v = self.eval(expr)?;
                    let ty = match (expr, &v) {
                        (tsql::Expr::Variable(n), _) => {
                            self.var_type(n).unwrap_or_else(|| natural_type(&v))
                        }
                        (_, Value::Null) => DataType::Int,
                        _ => natural_type(&v),
                    };
                    let name = alias.as_ref().map(|a| a.value.clone()).unwrap_or_default();
                    cols.push((name, ty));
                    row.push(v);
                }
                SelectItem::Assign { var, op, expr } => {
                    let v = self.eval(expr)?;
                    assigns.push((var.clone(), *op, v))
                }
            }
        }
        for (var, op, v) in assigns {
            self.assign(&var, op, v)?;
        }
        if cols.is_empty() {
            return Ok(Some(1));
        }
        out.push(Out::Columns(cols));
        out.push(Out::Row(row));
        Ok(Some(1))
    }

    fn nested_batch(
        &mut self,
        sql: &str,
        vars: HashMap<String, Var>,
        out: &mut Vec<Out>,
    ) -> Result<(), SqlError> {
        if self.depth > 32 {
            return Err(SqlError::new(217, 16, "Maximum stored procedure, function, trigger, or view nesting level exceeded (limit 32)."));
        }
        self.nested_batch_with(sql, vars, out, |_| {})
    }

    /// A nested batch in its own variable scope; `finish` sees the scope's final variables.
    fn nested_batch_with(
        &mut self,
        sql: &str,
        vars: HashMap<String, Var>,
        out: &mut Vec<Out>,
        finish: impl FnOnce(&HashMap<String, Var>),
    ) -> Result<(), SqlError> {
        if self.depth > 32 {
            return Err(SqlError::new(217, 16, "Maximum stored procedure, function, trigger, or view nesting level exceeded (limit 32)."));
        }
        let stmts = tsql::parse_batch(sql)?;
        self.scopes.push(vars);
        self.depth += 1;
        let r = self.run_block(&stmts, out, false);
        self.depth -= 1;
        if let Some(scope) = self.scopes.pop() {
            finish(&scope);
        }
        r.map(|_| ())
    }

    fn exec_proc(&mut self, e: &Exec, out: &mut Vec<Out>) -> Result<Flow, SqlError> {
        let name = match &e.proc {
            ProcTarget::Name(n) => n.name().to_string(),
            ProcTarget::Variable(v) => display(&self.var(v)?),
        };
        let lname = name.to_lowercase();
        let mut args = Vec::new();
        for a in &e.args {
            args.push((a.name.clone(), self.eval(&a.value)?));
        }
        let status = match lname.as_str() {
            "sp_executesql" => {
                let stmt = arg(&args, 0, "@stmt").map(display).unwrap_or_default();
                let defs = arg(&args, 1, "@params").map(display).unwrap_or_default();
                let mut vars = HashMap::new();
                if !defs.trim().is_empty() {
                    let params = tsql::parse_param_definitions(&defs)?;
                    for (i, p) in params.iter().enumerate() {
                        let v = args
                            .iter()
                            .find(|(n, _)| {
                                n.as_deref()
                                    .is_some_and(|n| n.eq_ignore_ascii_case(&p.name))
                            })
                            .map(|(_, v)| v.clone())
                            .or_else(|| {
                                args.get(i + 2)
                                    .filter(|(n, _)| n.is_none())
                                    .map(|(_, v)| v.clone())
                            })
                            .unwrap_or(Value::Null);
                        vars.insert(
                            p.name.to_lowercase(),
                            Var {
                                ty: p.ty,
                                value: tsql::value::assign(&v, &p.ty)?,
                            },
                        );
                    }
                }
                self.nested_batch(&stmt, vars, out)?;
                0
            }
            _ => admin::system_procedure(self, &lname, &args, out)?,
        };
        if let Some(rv) = &e.return_var {
            self.assign(rv, AssignOp::Assign, Value::Int(status))?;
        }
        out.push(Out::ReturnStatus(status));
        Ok(Flow::Normal)
    }

    /// RPC sp_executesql / sp_prepexec / sp_execute: `params` are (name, type, value) from the wire.
    pub fn execute_sql_with_params(
        &mut self,
        sql: &str,
        params: Vec<(String, DataType, Value)>,
        out: &mut Vec<Out>,
    ) {
        self.execute_sql_with_outputs(sql, params, &[], out);
    }

    /// As [`Conn::execute_sql_with_params`]; returns the final values of the `outputs` variables (the RPC's
    /// OUTPUT parameters), in order.
    pub fn execute_sql_with_outputs(
        &mut self,
        sql: &str,
        params: Vec<(String, DataType, Value)>,
        outputs: &[String],
        out: &mut Vec<Out>,
    ) -> Vec<Value> {
        self.session.reset_cancel();
        self.catalog = None;
        self.reported = false;
        let mut vars = HashMap::new();
        for (n, ty, v) in params {
            let n = if n.starts_with('@') {
                n
            } else {
                format!("@{n}")
            };
            vars.insert(n.to_lowercase(), Var { ty, value: v });
        }
        let mut finals = Vec::new();
        let r = self.nested_batch_with(sql, vars, out, |scope| {
            finals = outputs
                .iter()
                .map(|n| {
                    let n = if n.starts_with('@') {
                        n.to_lowercase()
                    } else {
                        format!("@{}", n.to_lowercase())
                    };
                    scope
                        .get(&n)
                        .map(|v| v.value.clone())
                        .unwrap_or(Value::Null)
                })
                .collect();
        });
        if let Err(e) = r {
            if !out.iter().any(|o| matches!(o, Out::Error(x) if x == &e)) {
                out.push(Out::Error(e));
            }
        }
        finals
    }

    pub fn prepare(&mut self, defs: &str, sql: &str) -> i32 {
        let h = self.next_handle;
        self.next_handle += 1;
        self.prepared.insert(h, (defs.to_string(), sql.to_string()));
        h
    }

    pub fn prepared(&self, h: i32) -> Option<(String, String)> {
        self.prepared.get(&h).cloned()
    }

    pub fn unprepare(&mut self, h: i32) {
        self.prepared.remove(&h);
    }

    fn set_option(&mut self, o: &tsql::ast::SetOption) -> Result<(), SqlError> {
        let name = o.names.first().map(String::as_str).unwrap_or("");
        let on = matches!(o.value, OptionValue::On);
        match name {
            "NOCOUNT" => self.nocount = on,
            "ROWCOUNT" => {
                self.row_limit = match &o.value {
                    OptionValue::Expr(e) => self.eval(e)?.as_i64().unwrap_or(0).max(0) as u64,
                    _ => 0,
                };
            }
            "XACT_ABORT" => self.xact_abort = on,
            "IMPLICIT_TRANSACTIONS" => self.implicit_transactions = on,
            "LOCK_TIMEOUT" => {
                let ms = match &o.value {
                    OptionValue::Expr(e) => self.eval(e)?.as_i64().unwrap_or(-1),
                    _ => -1,
                };
                self.session.lock_timeout = if ms < 0 {
                    None
                } else {
                    Some(Duration::from_millis(ms as u64))
                };
            }
            "TRANSACTION ISOLATION LEVEL" => {
                self.session.isolation = match &o.value {
                    OptionValue::Word(w) if w == "SNAPSHOT" => engine::session::Isolation::Snapshot,
                    _ => engine::session::Isolation::ReadCommitted,
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn implicit_begin(&mut self, out: &mut Vec<Out>) {
        if self.implicit_transactions && self.session.trancount() == 0 {
            self.session.begin_tran();
            out.push(Out::TranBegin);
        }
    }

    // ---- variables and expressions -------------------------------------------------------------------------

    fn var(&self, name: &str) -> Result<Value, SqlError> {
        let k = name.to_lowercase();
        // Nested batches (sp_executesql, EXEC) do not see the caller's variables: only the innermost scope.
        if let Some(v) = self.scopes.last().and_then(|s| s.get(&k)) {
            return Ok(v.value.clone());
        }
        Err(SqlError::new(
            137,
            15,
            format!("Must declare the scalar variable \"{name}\"."),
        ))
    }

    fn var_type(&self, name: &str) -> Option<DataType> {
        self.scopes
            .last()
            .and_then(|s| s.get(&name.to_lowercase()))
            .map(|v| v.ty)
    }

    fn assign(&mut self, name: &str, op: AssignOp, v: Value) -> Result<(), SqlError> {
        let k = name.to_lowercase();
        let scope = self.scopes.last_mut().expect("scope");
        let Some(var) = scope.get_mut(&k) else {
            return Err(SqlError::new(
                137,
                15,
                format!("Must declare the scalar variable \"{name}\"."),
            ));
        };
        let v = match op.binop() {
            Some(b) => tsql::eval::binary_op(b, &var.value, &v)?,
            None => v,
        };
        var.value = tsql::value::assign(&v, &var.ty)?;
        Ok(())
    }

    pub fn eval(&mut self, e: &tsql::Expr) -> Result<Value, SqlError> {
        tsql::eval(e, &Ctx(std::cell::RefCell::new(self)))
    }

    fn predicate(&mut self, e: &tsql::Expr) -> Result<Option<bool>, SqlError> {
        tsql::eval_predicate(e, &Ctx(std::cell::RefCell::new(self)))
    }

    /// Run a query for the evaluator (scalar subqueries, EXISTS), keeping @@ROWCOUNT as it was.
    fn subquery_rows(&mut self, q: &Query) -> Result<Vec<Vec<Value>>, SqlError> {
        let st = Statement {
            line: 0,
            kind: StatementKind::Query(Box::new(q.clone())),
            span: (0, 0),
        };
        let rowcount = self.rowcount;
        let mut tmp = Vec::new();
        let r = self.run_statement(&st, &mut tmp, true);
        self.rowcount = rowcount;
        r?;
        Ok(tmp
            .into_iter()
            .filter_map(|o| if let Out::Row(r) = o { Some(r) } else { None })
            .collect())
    }

    pub fn global(&self, name: &str) -> Option<Value> {
        let n = name.to_ascii_uppercase();
        Some(match n.as_str() {
            "@@SERVERNAME" => Value::NVarChar(self.server.name.clone()),
            "@@SERVICENAME" => Value::NVarChar("MSSQLSERVER".into()),
            "@@SPID" => Value::SmallInt(self.shared.lock().spid as i16),
            "@@TRANCOUNT" => Value::Int(self.session.trancount() as i32),
            "@@ROWCOUNT" => Value::Int(self.rowcount as i32),
            "@@ERROR" => Value::Int(self.error),
            "@@VERSION" => Value::NVarChar(self.server.version_string()),
            "@@IDENTITY" => self.shared.lock().identity.map(dec0).unwrap_or(Value::Null),
            "@@LANGUAGE" => Value::NVarChar("us_english".into()),
            "@@MAX_PRECISION" => Value::TinyInt(38),
            "@@TEXTSIZE" => Value::Int(2147483647),
            "@@LOCK_TIMEOUT" => Value::Int(
                self.session
                    .lock_timeout
                    .map(|d| d.as_millis() as i32)
                    .unwrap_or(-1),
            ),
            "@@OPTIONS" => Value::Int(5496),
            "@@DBTS" => Value::Binary(vec![0; 8]),
            _ => return None,
        })
    }

    // ---- translated statements -------------------------------------------------------------------------------

    fn load_catalog(&mut self) -> Result<(), SqlError> {
        if self.catalog.is_some() {
            return Ok(());
        }
        let mut map = HashMap::new();
        if self.database() != "master" {
            let exists = self
                .session
                .query(
                    &format!("SELECT count(*) FROM sqlite_master WHERE name = '{META_TABLE}'"),
                    &[],
                )
                .map_err(engine_err_sql)?;
            if exists.rows.first().and_then(|r| r.first()) == Some(&Sqlite::Integer(1)) {
                let rows = self
                    .session
                    .query(&format!("SELECT table_key, name, type, is_identity FROM {META_TABLE} ORDER BY table_key, ordinal"), &[])
                    .map_err(engine_err_sql)?;
                for r in rows.rows {
                    let (Sqlite::Text(t), Sqlite::Text(n), Sqlite::Text(ty)) =
                        (&r[0], &r[1], &r[2])
                    else {
                        continue;
                    };
                    let ty = tsql::parse_data_type(ty).unwrap_or(DataType::NVarChar(Len::Max));
                    let e: &mut TableInfo = map.entry(t.to_lowercase()).or_insert(TableInfo {
                        columns: vec![],
                        identity: None,
                    });
                    if r[3] == Sqlite::Integer(1) {
                        e.identity = Some(n.clone());
                    }
                    e.columns.push((n.clone(), ty));
                }
            }
        }
        for (k, cols) in sysviews::catalog() {
            map.insert(
                k.to_string(),
                TableInfo {
                    columns: cols,
                    identity: None,
                },
            );
        }
        self.catalog = Some(map);
        Ok(())
    }

    fn run_translated(&mut self, st: &Statement, out: &mut Vec<Out>) -> Result<Flow, SqlError> {
        self.load_catalog()?;
        let t = {
            let cat = CatalogView {
                tables: self.catalog.as_ref().expect("loaded"),
                conn: self,
            };
            tsql::translate(st, &cat)?
        };
        let master = self.database() == "master";
        let mut t = t;
        if !master {
            t.sql = same_database_names(&t.sql, &self.database());
        }
        let writes = !matches!(
            t.kind,
            TranslationKind::Query | TranslationKind::SelectAssign
        );
        if master && writes {
            return Err(SqlError::new(
                50000,
                16,
                "User tables cannot be created or changed in master on this server: master holds only instance-level objects. Create a database and USE it.",
            ));
        }
        if self.row_limit > 0
            && matches!(
                t.kind,
                TranslationKind::Insert | TranslationKind::Update | TranslationKind::Delete
            )
        {
            return Err(SqlError::unsupported(
                "SET ROWCOUNT with INSERT, UPDATE or DELETE (use TOP)",
                st.line,
            ));
        }
        let mut params = Vec::with_capacity(t.params.len());
        for p in &t.params {
            let v = if p.starts_with("@@") {
                self.global(p).unwrap_or(Value::Null)
            } else {
                self.var(p)?
            };
            params.push(to_sqlite(&v));
        }
        sysviews::materialise(self, &t.sql)?;
        if writes {
            self.implicit_begin(out);
        }
        let ddl = matches!(
            t.kind,
            TranslationKind::CreateTable
                | TranslationKind::AlterTable
                | TranslationKind::DropTable
                | TranslationKind::SelectInto
        );
        let mut sink = engine::Collect::default();
        let outcome = if ddl || !t.extra.is_empty() {
            // Several SQLite statements (and the metadata rows) commit as one transaction.
            let own = self.session.trancount() == 0;
            if own {
                self.session.begin_tran();
            }
            let r = (|| -> Result<engine::Outcome, SqlError> {
                let o = self
                    .session
                    .execute(&t.sql, &params, &mut sink)
                    .map_err(engine_err_sql)?;
                for x in &t.extra {
                    self.session
                        .execute(x, &[], &mut engine::Collect::default())
                        .map_err(engine_err_sql)?;
                }
                self.store_metadata(&t)?;
                Ok(o)
            })();
            match r {
                Ok(o) => {
                    if own {
                        self.session.commit_tran().map_err(engine_err_sql)?;
                    }
                    o
                }
                Err(e) => {
                    if own {
                        let _ = self.session.rollback_tran();
                    }
                    return Err(e);
                }
            }
        } else if master {
            run_on(&self.mem, &t.sql, &params, &mut sink)?
        } else {
            self.session
                .execute(&t.sql, &params, &mut sink)
                .map_err(engine_err_sql)?
        };
        if ddl {
            self.catalog = None;
        }
        let mut outcome = outcome;
        if self.row_limit > 0
            && matches!(
                t.kind,
                TranslationKind::Query | TranslationKind::SelectAssign
            )
            && sink.rows.len() as u64 > self.row_limit
        {
            // SET ROWCOUNT n: the query stops after n rows.
            sink.rows.truncate(self.row_limit as usize);
            outcome.rows = self.row_limit as _;
        }
        match t.kind {
            TranslationKind::SelectAssign => {
                if let Some(last) = sink.rows.last() {
                    for (i, var) in t.assign_to.iter().enumerate() {
                        let ty = t.columns.get(i).and_then(|c| c.ty);
                        let v = from_sqlite(&last[i], ty.as_ref())?;
                        self.assign(var, AssignOp::Assign, v)?;
                    }
                }
                self.rowcount = sink.rows.len() as i64;
                self.done(out, Some(sink.rows.len() as u64));
            }
            _ => {
                if !sink.columns.is_empty()
                    || (!t.columns.is_empty() && matches!(t.kind, TranslationKind::Query))
                {
                    self.emit_rows(&t, sink, out)?;
                }
                let n = if matches!(t.kind, TranslationKind::Query) {
                    outcome.rows
                } else {
                    outcome.changes
                };
                if matches!(t.kind, TranslationKind::Insert) && outcome.changes > 0 {
                    let has_identity = t
                        .target
                        .as_ref()
                        .and_then(|k| self.catalog.as_ref().and_then(|c| c.get(&k.to_lowercase())))
                        .is_some_and(|ti| ti.identity.is_some());
                    if has_identity {
                        self.shared.lock().identity = Some(outcome.last_insert_rowid);
                    }
                }
                self.rowcount = n as i64;
                let report = !matches!(
                    t.kind,
                    TranslationKind::CreateTable
                        | TranslationKind::AlterTable
                        | TranslationKind::DropTable
                        | TranslationKind::CreateIndex
                        | TranslationKind::DropIndex
                        | TranslationKind::CreateView
                        | TranslationKind::DropView
                );
                let cmd = match t.kind {
                    TranslationKind::Insert | TranslationKind::SelectInto => Some(0xC3),
                    TranslationKind::Update => Some(0xC5),
                    TranslationKind::Delete | TranslationKind::Truncate => Some(0xC4),
                    _ => None,
                };
                match cmd {
                    Some(c) if !self.nocount => out.push(Out::DoneDml(n, c)),
                    _ => self.done(out, if report { Some(n) } else { None }),
                }
            }
        }
        Ok(Flow::Normal)
    }

    fn emit_rows(
        &mut self,
        t: &Translation,
        sink: engine::Collect,
        out: &mut Vec<Out>,
    ) -> Result<(), SqlError> {
        let n = sink.columns.len().max(t.columns.len());
        let mut types: Vec<Option<DataType>> = (0..n)
            .map(|i| t.columns.get(i).and_then(|c| c.ty))
            .collect();
        let mut rows = Vec::with_capacity(sink.rows.len());
        for r in &sink.rows {
            let mut row = Vec::with_capacity(r.len());
            for (i, v) in r.iter().enumerate() {
                row.push(from_sqlite(v, types.get(i).and_then(|t| t.as_ref()))?);
            }
            rows.push(row);
        }
        for (i, ty) in types.iter_mut().enumerate() {
            if ty.is_none() {
                // No declared type: one that every value of the column converts to (NULL-only: INT, as SQL Server).
                *ty = Some(
                    rows.iter()
                        .map(|r: &Vec<Value>| &r[i])
                        .filter(|v| !v.is_null())
                        .map(natural_type)
                        .reduce(|a, b| {
                            if a == b {
                                a
                            } else {
                                tsql::types::union_result(&a, &b)
                            }
                        })
                        .unwrap_or(DataType::Int),
                );
            }
        }
        let names: Vec<String> = (0..n)
            .map(|i| {
                t.columns
                    .get(i)
                    .map(|c| c.name.clone())
                    .or_else(|| sink.columns.get(i).map(|c| c.name.clone()))
                    .unwrap_or_default()
            })
            .collect();
        out.push(Out::Columns(
            names
                .into_iter()
                .zip(types.into_iter().map(|t| t.expect("typed")))
                .collect(),
        ));
        for r in rows {
            out.push(Out::Row(r));
        }
        Ok(())
    }

    /// Declared T-SQL column types live inside the database file, so replicas and restores keep them.
    fn store_metadata(&mut self, t: &Translation) -> Result<(), SqlError> {
        let drop_keys: Vec<String> = match t.kind {
            TranslationKind::DropTable => t.target.iter().cloned().collect(),
            _ => vec![],
        };
        if t.table.is_none() && drop_keys.is_empty() {
            return Ok(());
        }
        let none = &mut engine::Collect::default();
        self.session
            .execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {META_TABLE}(table_key TEXT NOT NULL, ordinal INT NOT NULL, name TEXT NOT NULL, \
                     type TEXT NOT NULL, is_nullable INT, is_identity INT, PRIMARY KEY (table_key, ordinal))"
                ),
                &[],
                none,
            )
            .map_err(engine_err_sql)?;
        for k in drop_keys {
            self.session
                .execute(
                    &format!("DELETE FROM {META_TABLE} WHERE table_key = ?1 COLLATE NOCASE"),
                    &[Sqlite::Text(k)],
                    none,
                )
                .map_err(engine_err_sql)?;
        }
        if let Some(meta) = &t.table {
            let start = if matches!(t.kind, TranslationKind::AlterTable) {
                let r = self
                    .session
                    .query(&format!("SELECT coalesce(max(ordinal), 0) FROM {META_TABLE} WHERE table_key = ?1 COLLATE NOCASE"), &[Sqlite::Text(meta.name.clone())])
                    .map_err(engine_err_sql)?;
                match r.rows.first().and_then(|r| r.first()) {
                    Some(Sqlite::Integer(i)) => *i,
                    _ => 0,
                }
            } else {
                0
            };
            for (i, c) in meta.columns.iter().enumerate() {
                let ty = c.ty.unwrap_or(DataType::NVarChar(Len::Max));
                self.session
                    .execute(
                        &format!(
                            "INSERT OR REPLACE INTO {META_TABLE} VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                        ),
                        &[
                            Sqlite::Text(meta.name.clone()),
                            Sqlite::Integer(start + i as i64 + 1),
                            Sqlite::Text(c.name.clone()),
                            Sqlite::Text(ty.to_string()),
                            Sqlite::Integer(c.nullable as i64),
                            Sqlite::Integer(c.identity.is_some() as i64),
                        ],
                        none,
                    )
                    .map_err(engine_err_sql)?;
            }
        }
        Ok(())
    }

    /// OBJECT_ID('[db.][schema.]name' [, 'U']): user tables of the current database, with sys.tables' ids;
    /// system views get negative ids. NULL for anything else.
    pub fn object_id(&self, args: &[Value]) -> Value {
        let Some(name) = args.first().filter(|v| !v.is_null()).map(display) else {
            return Value::Null;
        };
        let kind = args
            .get(1)
            .map(display)
            .unwrap_or_default()
            .trim()
            .to_ascii_uppercase();
        let parts: Vec<String> = name
            .split('.')
            .map(|p| p.trim().trim_matches(['[', ']', '"']).to_string())
            .collect();
        let (db, schema, obj) = match parts.as_slice() {
            [o] => (None, None, o.clone()),
            [s, o] => (None, Some(s.clone()), o.clone()),
            [d, s, o] => (Some(d.clone()), Some(s.clone()), o.clone()),
            _ => return Value::Null,
        };
        if db
            .as_deref()
            .is_some_and(|d| !d.is_empty() && !d.eq_ignore_ascii_case(&self.database()))
        {
            return Value::Null;
        }
        let key = match schema.as_deref() {
            Some(s) if !s.is_empty() && !s.eq_ignore_ascii_case("dbo") => {
                format!("{s}.{obj}").to_lowercase()
            }
            _ => obj.to_lowercase(),
        };
        let Some(cat) = self.catalog.as_ref() else {
            return Value::Null;
        };
        if !cat.contains_key(&key) {
            return Value::Null;
        }
        let system: Vec<&str> = sysviews::catalog().iter().map(|(k, _)| *k).collect();
        if let Some(i) = system.iter().position(|k| *k == key) {
            return if kind.is_empty() || kind == "V" {
                Value::Int(-100 - i as i32)
            } else {
                Value::Null
            };
        }
        if !(kind.is_empty() || kind == "U") {
            return Value::Null;
        }
        Value::Int(sysviews::object_id(&key))
    }

    /// Declared columns of a table of the current database (or a system view).
    pub fn table_columns(&mut self, name: &str) -> Option<Vec<(String, DataType)>> {
        self.load_catalog().ok()?;
        self.catalog
            .as_ref()?
            .get(&name.to_lowercase())
            .map(|t| t.columns.clone())
    }

    pub fn table_identity(&mut self, name: &str) -> Option<String> {
        self.load_catalog().ok()?;
        self.catalog
            .as_ref()?
            .get(&name.to_lowercase())
            .and_then(|t| t.identity.clone())
    }

    pub fn mem(&self) -> &rusqlite::Connection {
        &self.mem
    }

    pub fn out_done(&mut self, out: &mut Vec<Out>, rows: Option<u64>) {
        self.done(out, rows)
    }
}

/// `db.dbo.t` naming the current database: the translator emits `"db"."t"`; SQLite knows it as `main`.
fn same_database_names(sql: &str, db: &str) -> String {
    let pat = format!("\"{}\".", db.replace('"', "\"\"")).to_lowercase();
    let lower = sql.to_lowercase();
    if !lower.contains(&pat) || lower.len() != sql.len() {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while let Some(p) = lower[i..].find(&pat) {
        out.push_str(&sql[i..i + p]);
        out.push_str("main.");
        i += p + pat.len();
    }
    out.push_str(&sql[i..]);
    out
}

impl Drop for Conn {
    fn drop(&mut self) {
        let spid = self.shared.lock().spid;
        self.server.sessions.lock().remove(&spid);
    }
}

fn arg<'a>(args: &'a [(Option<String>, Value)], pos: usize, name: &str) -> Option<&'a Value> {
    args.iter()
        .find(|(n, _)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .or_else(|| args.get(pos).filter(|(n, _)| n.is_none()))
        .map(|(_, v)| v)
}

pub fn run_on(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[Sqlite],
    sink: &mut engine::Collect,
) -> Result<engine::Outcome, SqlError> {
    let r = (|| -> rusqlite::Result<engine::Outcome> {
        let mut st = c.prepare(sql)?;
        let n = st.column_count();
        sink.columns = st
            .columns()
            .map(|c| engine::session::ColumnInfo {
                name: c.name().to_string(),
                decl_type: c.decl_type().map(str::to_string),
            })
            .collect();
        let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
        let mut k = 0;
        while let Some(r) = rows.next()? {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(r.get::<_, Sqlite>(i)?);
            }
            sink.rows.push(v);
            k += 1;
        }
        Ok(engine::Outcome {
            rows: k,
            changes: 0,
            last_insert_rowid: 0,
            lsn: None,
        })
    })();
    r.map_err(|e| engine_err_sql(engine::SqlError::from(e)))
}

struct CatalogView<'a> {
    tables: &'a HashMap<String, TableInfo>,
    conn: &'a Conn,
}

impl tsql::Catalog for CatalogView<'_> {
    fn column_types(&self, table: &str) -> Option<Vec<(String, DataType)>> {
        self.tables
            .get(&table.to_lowercase())
            .map(|t| t.columns.clone())
    }
    fn identity_column(&self, table: &str) -> Option<String> {
        self.tables
            .get(&table.to_lowercase())
            .and_then(|t| t.identity.clone())
    }
    fn variable_type(&self, name: &str) -> Option<DataType> {
        let k = name.to_lowercase();
        self.conn
            .scopes
            .last()
            .and_then(|s| s.get(&k))
            .map(|v| v.ty)
    }
}

/// The evaluator's view of a session. Subqueries need the session mutably; the evaluator never holds a
/// variable borrow across a subquery call, so a RefCell is enough.
pub struct Ctx<'a>(pub std::cell::RefCell<&'a mut Conn>);

impl tsql::Context for Ctx<'_> {
    fn variable(&self, name: &str) -> Option<Value> {
        self.0.borrow().var(name).ok()
    }
    fn global(&self, name: &str) -> Option<Value> {
        self.0.borrow().global(name)
    }
    fn function(&self, name: &str, args: &[Value]) -> Option<Result<Value, SqlError>> {
        let c = self.0.borrow();
        if name == "OBJECT_ID" {
            return Some(Ok(c.object_id(args)));
        }
        instance_function(&c.shared, &c.server, name, args)
    }
    fn subquery(&self, q: &Query) -> Result<Value, SqlError> {
        let rows = self.0.borrow_mut().subquery_rows(q)?;
        if rows.len() > 1 {
            return Err(SqlError::new(
                512,
                16,
                "Subquery returned more than 1 value. This is not permitted when the subquery follows =, !=, <, <= , >, >= or when the subquery is used as an expression.",
            ));
        }
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .unwrap_or(Value::Null))
    }
    fn exists(&self, q: &Query) -> Result<bool, SqlError> {
        Ok(!self.0.borrow_mut().subquery_rows(q)?.is_empty())
    }
}

/// Functions the instance answers, for the evaluator and (as tsql_<name>) for SQLite.
pub fn instance_function(
    shared: &Mutex<Shared>,
    server: &Server,
    name: &str,
    args: &[Value],
) -> Option<Result<Value, SqlError>> {
    let now = chrono::Local::now();
    let utc = chrono::Utc::now();
    let s = |x: &str| Value::NVarChar(x.to_string());
    Some(Ok(match name {
        "GETDATE" | "CURRENT_TIMESTAMP" => Value::DateTime(now.naive_local()),
        "GETUTCDATE" => Value::DateTime(utc.naive_utc()),
        "SYSDATETIME" => Value::DateTime2(now.naive_local(), 7),
        "SYSUTCDATETIME" => Value::DateTime2(utc.naive_utc(), 7),
        "SYSDATETIMEOFFSET" => Value::DateTimeOffset(now.fixed_offset(), 7),
        "NEWID" => {
            let mut g = engine::database::new_guid();
            g[6] = (g[6] & 0x0f) | 0x40;
            g[8] = (g[8] & 0x3f) | 0x80;
            Value::Guid(g)
        }
        "SCOPE_IDENTITY" | "IDENT_CURRENT" => {
            shared.lock().identity.map(dec0).unwrap_or(Value::Null)
        }
        "DB_NAME" => match args.first() {
            None | Some(Value::Null) => s(&shared.lock().database),
            Some(v) => {
                let id = v.as_i64().unwrap_or(0);
                match id {
                    1 => s("master"),
                    2 => s("tempdb"),
                    3 => s("model"),
                    4 => s("msdb"),
                    _ => server
                        .inst
                        .databases()
                        .into_iter()
                        .find(|d| d.database_id as i64 == id)
                        .map(|d| s(&d.name))
                        .unwrap_or(Value::Null),
                }
            }
        },
        "DB_ID" => {
            let n = match args.first() {
                None | Some(Value::Null) => shared.lock().database.clone(),
                Some(v) => display(v),
            };
            match n.to_lowercase().as_str() {
                "master" => Value::SmallInt(1),
                "tempdb" => Value::SmallInt(2),
                "model" => Value::SmallInt(3),
                "msdb" => Value::SmallInt(4),
                _ => server
                    .inst
                    .database_id(&n)
                    .map(|i| Value::SmallInt(i as i16))
                    .unwrap_or(Value::Null),
            }
        }
        "SERVERPROPERTY" => {
            let p = args.first().map(display).unwrap_or_default();
            match p.to_ascii_lowercase().as_str() {
                "machinename" => s(&server.host),
                "servername" => s(&server.name),
                "instancename" => Value::Null,
                "productversion" => s("16.0.1000.6"),
                "productlevel" => s("RTM"),
                "edition" => s(if server.managed {
                    "SQL Azure"
                } else {
                    "Developer Edition (64-bit)"
                }),
                "engineedition" => Value::Int(if server.managed { 8 } else { 3 }),
                "ishadrenabled" => Value::Int(1),
                "collation" => s("SQL_Latin1_General_CP1_CI_AS"),
                "isclustered" => Value::Int(0),
                "isfulltextinstalled" => Value::Int(0),
                "isintegratedsecurityonly" => Value::Int(0),
                "processid" => Value::Int(std::process::id() as i32),
                _ => Value::Null,
            }
        }
        "SUSER_SNAME" | "SUSER_NAME" | "ORIGINAL_LOGIN" | "SYSTEM_USER" | "SESSION_USER" => {
            s(&shared.lock().login)
        }
        "USER_NAME" | "CURRENT_USER" | "USER" => s("dbo"),
        "HOST_NAME" => s(&server.host),
        "APP_NAME" => s(""),
        "IS_SRVROLEMEMBER" => Value::Int(1),
        "ERROR_MESSAGE" => shared
            .lock()
            .error
            .as_ref()
            .map(|e| s(&e.message))
            .unwrap_or(Value::Null),
        "ERROR_NUMBER" => shared
            .lock()
            .error
            .as_ref()
            .map(|e| Value::Int(e.number))
            .unwrap_or(Value::Null),
        "ERROR_SEVERITY" => shared
            .lock()
            .error
            .as_ref()
            .map(|e| Value::Int(e.severity as i32))
            .unwrap_or(Value::Null),
        "ERROR_STATE" => shared
            .lock()
            .error
            .as_ref()
            .map(|e| Value::Int(e.state as i32))
            .unwrap_or(Value::Null),
        "ERROR_LINE" => shared
            .lock()
            .error
            .as_ref()
            .map(|e| Value::Int(e.line as i32))
            .unwrap_or(Value::Null),
        "ERROR_PROCEDURE" => Value::Null,
        "CERT_ID" | "CERTENCODED" => return crate::trustsql::function(server, name, args),
        _ => return None,
    }))
}

fn dec0(i: i64) -> Value {
    tsql::value::convert(
        &Value::BigInt(i),
        &DataType::Decimal {
            precision: 38,
            scale: 0,
            numeric: true,
        },
        None,
    )
    .unwrap_or(Value::BigInt(i))
}

const INSTANCE_FUNCTIONS: &[&str] = &[
    "GETDATE",
    "GETUTCDATE",
    "SYSDATETIME",
    "SYSUTCDATETIME",
    "SYSDATETIMEOFFSET",
    "NEWID",
    "SCOPE_IDENTITY",
    "DB_NAME",
    "DB_ID",
    "SERVERPROPERTY",
    "SUSER_SNAME",
    "SUSER_NAME",
    "USER_NAME",
    "HOST_NAME",
    "APP_NAME",
    "ERROR_MESSAGE",
    "ERROR_NUMBER",
    "ERROR_SEVERITY",
    "ERROR_STATE",
    "ERROR_LINE",
    "ORIGINAL_LOGIN",
    "IS_SRVROLEMEMBER",
    "CERT_ID",
    "CERTENCODED",
];

/// Session-bound functions on a SQLite connection (not deterministic: time, identity, current database).
fn register_functions(
    c: &rusqlite::Connection,
    shared: Arc<Mutex<Shared>>,
    server: Arc<Server>,
) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    // "name" is always an identifier in T-SQL (QUOTED_IDENTIFIER ON): never let SQLite read an unknown
    // double-quoted column as a string literal (that would hide error 207 behind a silently wrong result).
    c.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    c.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
    for name in INSTANCE_FUNCTIONS {
        let sh = shared.clone();
        let srv = server.clone();
        let fname = format!("tsql_{}", name.to_ascii_lowercase());
        c.create_scalar_function(fname.as_str(), -1, FunctionFlags::SQLITE_UTF8, move |ctx| {
            let mut args = Vec::new();
            for i in 0..ctx.len() {
                let v: Sqlite = ctx.get(i)?;
                args.push(from_sqlite(&v, None).unwrap_or(Value::Null));
            }
            match instance_function(&sh, &srv, name, &args) {
                Some(Ok(v)) => Ok(to_sqlite(&v)),
                Some(Err(e)) => Err(rusqlite::Error::UserFunctionError(
                    format!(
                        "{}{}:{}:{}:{}",
                        engine::collation::ERROR_PREFIX,
                        e.number,
                        e.severity,
                        e.state,
                        e.message
                    )
                    .into(),
                )),
                None => Ok(Sqlite::Null),
            }
        })?;
    }
    Ok(())
}

pub fn display(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::VarChar(s) | Value::NVarChar(s) => s.clone(),
        v => match tsql::value::convert(v, &DataType::NVarChar(Len::Max), None) {
            Ok(Value::NVarChar(s)) => s,
            _ => format!("{v:?}"),
        },
    }
}

fn format_message(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            let mut spec = String::new();
            while let Some(&n) = chars.peek() {
                spec.push(n);
                chars.next();
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
            if spec == "%" {
                out.push('%');
            } else {
                out.push_str(&it.next().map(display).unwrap_or_else(|| "(null)".into()));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_hms(s: &str) -> Option<f64> {
    let mut total = 0.0;
    for p in s.split(':') {
        total = total * 60.0 + p.trim().parse::<f64>().ok()?;
    }
    Some(total)
}

fn batch_aborting(e: &SqlError) -> bool {
    e.severity >= 20
        || matches!(
            e.number,
            245 | 8114 | 8115 | 8134 | 9002 | 1205 | 3960 | 1222
        )
}

/// An engine error as a tsql error (same numbers).
pub fn engine_err_sql(e: engine::SqlError) -> SqlError {
    // A tsql error raised inside SQLite (e.g. 2628 from column enforcement) that reached us as plain text.
    if let Some((n, sev, st, m)) = engine::collation::parse_error(&e.message) {
        let mut x = SqlError::new(n, sev, m);
        x.state = st;
        return x;
    }
    // SQLite's "no such column: "x" - should this be a string literal…" (DQS off) is SQL Server's 207.
    if let Some(i) = e.message.find("no such column: ") {
        let rest = &e.message[i + "no such column: ".len()..];
        let name = rest.split(" - ").next().unwrap_or(rest);
        let name = name.split(" in ").next().unwrap_or(name).trim();
        let name = name.rsplit('.').next().unwrap_or(name).trim_matches('"');
        return SqlError::new(207, 16, format!("Invalid column name '{name}'."));
    }
    let mut x = SqlError::new(e.number, e.severity, e.message);
    x.state = e.state;
    x
}

pub fn engine_err(e: impl std::fmt::Display) -> SqlError {
    SqlError::new(50000, 16, e.to_string())
}

pub fn exec_arg_value(a: &ExecArg) -> &tsql::Expr {
    &a.value
}
