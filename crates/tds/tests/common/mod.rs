//! Test scaffolding: a tiny handler that understands a few marker statements, and a
//! server on an ephemeral loopback port. The protocol is what is under test.
#![allow(dead_code)]
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tds::{
    Column, Date, DateTime2, Decimal, EnvChange, Handler, Login7, LoginError, LoginOk, ProcId,
    ResponseWriter, RpcRequest, ServerConfig, SqlBatch, SqlType, SqlValue, Time, TlsIdentity,
    TmRequest,
};

pub const USER: &str = "sa";
pub const PASSWORD: &str = "Secret123!";

pub struct TestHandler;

#[derive(Default)]
pub struct Session {
    descriptor: u64,
    next_descriptor: u64,
    pending: Vec<i64>,
    committed: Vec<i64>,
    prepared: HashMap<i32, String>,
    next_handle: i32,
    database: String,
}

impl Session {
    fn in_tran(&self) -> bool {
        self.descriptor != 0
    }
    fn begin(&mut self, out: &mut ResponseWriter<'_>) {
        self.next_descriptor += 1;
        self.descriptor = self.next_descriptor;
        out.env_change(EnvChange::BeginTransaction {
            descriptor: self.descriptor,
        });
        out.set_in_transaction(true);
    }
    fn end(&mut self, out: &mut ResponseWriter<'_>, commit: bool) {
        if !self.in_tran() {
            out.error(
                3902,
                16,
                1,
                "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
            );
            return;
        }
        let d = self.descriptor;
        if commit {
            let p = std::mem::take(&mut self.pending);
            self.committed.extend(p);
            out.env_change(EnvChange::CommitTransaction { descriptor: d });
        } else {
            self.pending.clear();
            out.env_change(EnvChange::RollbackTransaction { descriptor: d });
        }
        self.descriptor = 0;
        out.set_in_transaction(false);
    }
}

pub const NVARCHAR_TEXT: &str = "héllo wörld ✓ 日本";
pub fn big_text() -> String {
    "abcdefghij".repeat(500)
}

/// The row every client reads back, one column per type.
pub fn types_result() -> (Vec<Column>, Vec<SqlValue>) {
    let dt = DateTime2 {
        date: Date::from_ymd(2024, 2, 29).unwrap(),
        time: Time::from_hms_nano(13, 45, 7, 123_456_700).unwrap(),
    };
    let cols = vec![
        Column::new("c_int", SqlType::Int),
        Column::new("c_bigint", SqlType::BigInt),
        Column::new("c_bit", SqlType::Bit),
        Column::new(
            "c_decimal",
            SqlType::Decimal {
                precision: 10,
                scale: 4,
            },
        ),
        Column::new("c_float", SqlType::Float),
        Column::new("c_nvarchar", SqlType::NVarChar(Some(50))),
        Column::new("c_nvarcharmax", SqlType::NVarChar(None)),
        Column::new("c_varbinary", SqlType::VarBinary(Some(16))),
        Column::new("c_guid", SqlType::Guid),
        Column::new("c_datetime2", SqlType::DateTime2 { scale: 7 }),
        Column::new("c_date", SqlType::Date),
        Column::new("c_null", SqlType::Int),
        Column::new("c_nullstr", SqlType::NVarChar(Some(10))),
    ];
    let vals = vec![
        SqlValue::Int(-123456),
        SqlValue::BigInt(1234567890123),
        SqlValue::Bit(true),
        SqlValue::Decimal(Decimal {
            value: 123456789,
            precision: 10,
            scale: 4,
        }),
        SqlValue::Float(3.5),
        SqlValue::NVarChar(NVARCHAR_TEXT.into()),
        SqlValue::NVarChar(big_text()),
        SqlValue::VarBinary(vec![0xDE, 0xAD, 0xBE, 0xEF, 0x00]),
        SqlValue::Guid([
            0x6F, 0x96, 0x19, 0xFF, 0x8B, 0x86, 0xD0, 0x11, 0xB4, 0x2D, 0x00, 0xC0, 0x4F, 0xC9,
            0x64, 0xFF,
        ]),
        SqlValue::DateTime2(dt),
        SqlValue::Date(dt.date),
        SqlValue::Null,
        SqlValue::Null,
    ];
    (cols, vals)
}

impl TestHandler {
    /// Runs `sql` (a marker statement language, not SQL) with `params` echoed on demand.
    async fn exec(
        &self,
        s: &mut Session,
        sql: &str,
        params: &[tds::RpcParam],
        out: &mut ResponseWriter<'_>,
        in_proc: bool,
    ) {
        let done = |out: &mut ResponseWriter<'_>, rows: Option<u64>| {
            if in_proc {
                out.done_in_proc(rows)
            } else {
                out.done(rows)
            }
        };
        let lower = sql.to_ascii_lowercase();
        for stmt in lower.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            if stmt.contains("raiserror") {
                out.error(50000, 16, 3, "boom from the test handler");
                done(out, None);
            } else if stmt.contains("select types") {
                let (cols, vals) = types_result();
                out.columns(cols);
                out.row(&vals).unwrap();
                done(out, Some(1));
            } else if stmt.contains("select echo") {
                let cols: Vec<Column> = params
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let name = p.name.trim_start_matches('@');
                        Column::new(
                            if name.is_empty() {
                                format!("p{i}")
                            } else {
                                name.to_string()
                            },
                            p.ty,
                        )
                    })
                    .collect();
                let vals: Vec<SqlValue> = params.iter().map(|p| p.value.clone()).collect();
                out.columns(cols);
                if let Err(e) = out.row(&vals) {
                    out.error(245, 16, 1, e.to_string());
                }
                done(out, Some(1));
            } else if stmt.contains("select big") {
                // Streams rows until ATTENTION (or a large limit).
                out.columns(vec![
                    Column::new("n", SqlType::BigInt),
                    Column::new("pad", SqlType::NVarChar(Some(100))),
                ]);
                let pad = SqlValue::NVarChar("x".repeat(100));
                for i in 0..2_000_000i64 {
                    if out
                        .send_row(&[SqlValue::BigInt(i), pad.clone()])
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if i % 1000 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                done(out, Some(2_000_000));
            } else if stmt.contains("ignore cancel") {
                // A misbehaving handler: the driver must drop it after the grace period.
                tokio::time::sleep(Duration::from_secs(60)).await;
                done(out, None);
            } else if stmt.contains("waitfor") {
                let cancel = out.cancel_token();
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
                done(out, None);
            } else if stmt.starts_with("select 1") {
                out.columns(vec![Column::new("", SqlType::Int)]);
                out.row(&[SqlValue::Int(1)]).unwrap();
                done(out, Some(1));
            } else if stmt.starts_with("select @@spid") {
                out.columns(vec![Column::new("", SqlType::SmallInt)]);
                out.row(&[SqlValue::SmallInt(0)]).unwrap();
                done(out, Some(1));
            } else if stmt.starts_with("select db_name()") {
                out.columns(vec![Column::new("", SqlType::NVarChar(Some(128)))]);
                out.row(&[SqlValue::NVarChar(s.database.clone())]).unwrap();
                done(out, Some(1));
            } else if stmt.starts_with("begin tran") {
                s.begin(out);
                done(out, None);
            } else if stmt.starts_with("commit") {
                s.end(out, true);
                done(out, None);
            } else if stmt.starts_with("rollback") {
                s.end(out, false);
                done(out, None);
            } else if let Some(v) = stmt.strip_prefix("insert ") {
                let v: i64 = v.trim().parse().unwrap_or(-1);
                if s.in_tran() {
                    s.pending.push(v)
                } else {
                    s.committed.push(v)
                }
                done(out, Some(1));
            } else if stmt.starts_with("select rows") {
                out.columns(vec![Column::new("v", SqlType::BigInt)]);
                let all: Vec<i64> = s
                    .committed
                    .iter()
                    .chain(s.pending.iter())
                    .copied()
                    .collect();
                for v in &all {
                    out.row(&[SqlValue::BigInt(*v)]).unwrap();
                }
                done(out, Some(all.len() as u64));
            } else if let Some(db) = stmt.strip_prefix("use ") {
                let db = db.trim().trim_matches(|c| c == '[' || c == ']').to_string();
                out.env_change(EnvChange::Database {
                    new: db.clone(),
                    old: s.database.clone(),
                });
                out.info(5701, format!("Changed database context to '{db}'."));
                s.database = db;
                done(out, None);
            } else {
                // SET options and anything else: accepted silently.
                done(out, None);
            }
        }
    }
}

fn param_str(p: Option<&tds::RpcParam>) -> String {
    match p.map(|p| &p.value) {
        Some(SqlValue::NVarChar(s)) | Some(SqlValue::VarChar(s)) => s.clone(),
        _ => String::new(),
    }
}
fn param_int(p: Option<&tds::RpcParam>) -> i32 {
    match p.map(|p| &p.value) {
        Some(SqlValue::Int(i)) => *i,
        Some(SqlValue::BigInt(i)) => *i as i32,
        Some(SqlValue::SmallInt(i)) => *i as i32,
        Some(SqlValue::TinyInt(i)) => *i as i32,
        _ => -1,
    }
}

impl Handler for TestHandler {
    type Session = Session;

    async fn login(
        &self,
        login: &Login7,
        _conn: &tds::ConnInfo,
    ) -> Result<LoginOk<Session>, LoginError> {
        if login.username != USER || login.password != PASSWORD {
            return Err(LoginError::login_failed(&login.username));
        }
        let db = if login.database.is_empty() {
            "master".to_string()
        } else {
            login.database.clone()
        };
        Ok(LoginOk::new(
            Session {
                database: db.clone(),
                next_handle: 1,
                ..Default::default()
            },
            db,
        ))
    }

    async fn batch(&self, s: &mut Session, batch: SqlBatch, out: &mut ResponseWriter<'_>) {
        tracing::debug!(sql = %batch.sql, "test handler: batch");
        out.set_in_transaction(s.in_tran());
        self.exec(s, &batch.sql, &[], out, false).await;
    }

    async fn rpc(&self, s: &mut Session, rpc: RpcRequest, out: &mut ResponseWriter<'_>) {
        tracing::debug!(target = ?rpc.target, params = rpc.params.len(), "test handler: rpc");
        out.set_in_transaction(s.in_tran());
        let p = &rpc.params;
        match rpc.proc_id() {
            Some(ProcId::ExecuteSql) => {
                let sql = param_str(p.first());
                self.exec(s, &sql, p.get(2..).unwrap_or(&[]), out, true)
                    .await;
            }
            Some(ProcId::PrepExec) | Some(ProcId::Prepare) => {
                let sql = param_str(p.get(2));
                let h = s.next_handle;
                s.next_handle += 1;
                s.prepared.insert(h, sql.clone());
                if rpc.proc_id() == Some(ProcId::PrepExec) {
                    self.exec(s, &sql, p.get(3..).unwrap_or(&[]), out, true)
                        .await;
                }
                let name = p.first().map(|x| x.name.clone()).unwrap_or_default();
                out.return_status(0);
                out.return_value(0, &name, &SqlType::Int, &SqlValue::Int(h))
                    .unwrap();
            }
            Some(ProcId::Execute) => {
                let h = param_int(p.first());
                match s.prepared.get(&h).cloned() {
                    Some(sql) => {
                        self.exec(s, &sql, p.get(1..).unwrap_or(&[]), out, true)
                            .await
                    }
                    None => out.error(
                        8179,
                        16,
                        2,
                        format!("Could not find prepared statement with handle {h}."),
                    ),
                }
            }
            Some(ProcId::Unprepare) => {
                s.prepared.remove(&param_int(p.first()));
            }
            _ => {
                let name = match &rpc.target {
                    tds::RpcTarget::Name(n) => n.clone(),
                    tds::RpcTarget::Id(i) => format!("{i:?}"),
                };
                out.error(
                    2812,
                    16,
                    62,
                    format!("Could not find stored procedure '{name}'."),
                );
            }
        }
        out.return_status(0);
        out.done_proc(None);
    }

    async fn tm(&self, s: &mut Session, req: TmRequest, out: &mut ResponseWriter<'_>) {
        tracing::debug!(?req, "test handler: tm");
        match req {
            TmRequest::Begin { .. } => s.begin(out),
            TmRequest::Commit { then_begin, .. } => {
                s.end(out, true);
                if then_begin.is_some() {
                    s.begin(out);
                }
            }
            TmRequest::Rollback { then_begin, .. } => {
                s.end(out, false);
                if then_begin.is_some() {
                    s.begin(out);
                }
            }
            _ => out.error(8525, 16, 1, "Distributed transaction not supported."),
        }
        out.done(None);
    }

    async fn reset(&self, s: &mut Session, keep_transaction: bool) {
        if !keep_transaction {
            s.pending.clear();
            s.descriptor = 0;
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub cert_dir: PathBuf,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Starts a server on an ephemeral port in a shared background runtime.
pub fn start_server(tls: bool) -> TestServer {
    start_server_with(tls, false)
}

pub fn start_server_with(tls: bool, force_encryption: bool) -> TestServer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cert_dir =
        std::env::temp_dir().join(format!("tds-test-{}-{}", std::process::id(), rand_suffix()));
    let mut cfg = ServerConfig::new("milink-test");
    if tls {
        let id = TlsIdentity::load_or_generate(
            &cert_dir,
            &["localhost".to_string(), "127.0.0.1".to_string()],
        )
        .unwrap();
        cfg = cfg.with_tls(&id).unwrap();
    }
    cfg.attention_grace = Duration::from_secs(2);
    cfg.force_encryption = force_encryption;
    let cfg = Arc::new(cfg);
    let listener = runtime()
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime().spawn(tds::serve(listener, Arc::new(TestHandler), cfg));
    TestServer { addr, cert_dir }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    t ^ (N.fetch_add(1, Ordering::Relaxed) << 32)
}

/// Where scripts/test.sh installed the clients.
pub fn clients_dir() -> PathBuf {
    std::env::var_os("MILINK_TEST_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.test-clients"))
}

/// A missing client fails under CI and skips locally.
pub fn require(path: &std::path::Path, what: &str) -> bool {
    if path.exists() {
        return true;
    }
    if std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
    {
        panic!(
            "{what} not installed at {} (run scripts/test.sh)",
            path.display()
        );
    }
    eprintln!(
        "SKIP: {what} not installed at {} (run scripts/test.sh)",
        path.display()
    );
    false
}
