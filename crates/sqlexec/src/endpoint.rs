//! The TDS adapter: logins, batches, RPCs and transaction-manager requests from the wire, run on the blocking
//! pool (SQLite work never runs on the async threads), with ATTENTION wired to the session's cancel handle.

use crate::exec::{Conn, Out, Server};
use crate::values::{from_wire, type_of_wire, wire_type, wire_value};
use std::sync::Arc;
use tds::{
    Column, ConnInfo, DoneKind, EnvChange, Handler, Login7, LoginError, LoginOk, Message, ProcId,
    ResponseWriter, RpcRequest, RpcTarget, SqlBatch, SqlType, SqlValue, TmRequest,
};
use tsql::{DataType, Value};

pub struct Endpoint {
    pub server: Arc<Server>,
}

/// A client session: None while a request is running on the blocking pool.
pub struct Session {
    conn: Option<Box<Conn>>,
    /// Transaction descriptors for ENVCHANGE 8/9/10: 0 outside a transaction, unique per transaction.
    tx: TxIds,
}

#[derive(Default)]
struct TxIds {
    current: u64,
    last: u64,
}

impl TxIds {
    fn begin(&mut self) -> u64 {
        self.last += 1;
        self.current = self.last;
        self.current
    }
    fn end(&mut self) -> u64 {
        std::mem::take(&mut self.current).max(1)
    }
}

impl Endpoint {
    /// Run `f` on the session off the async threads; cancel it if the client sends ATTENTION.
    async fn run<F>(&self, s: &mut Session, out: &mut ResponseWriter<'_>, rpc: bool, f: F)
    where
        F: FnOnce(&mut Conn, &mut Vec<Out>) + Send + 'static,
    {
        let Some(mut conn) = s.conn.take() else {
            out.error(50000, 16, 1, "session is busy");
            return;
        };
        let cancel = conn.cancel_handle();
        let token = out.cancel_token();
        let before_tx = conn.in_transaction();
        let task = tokio::task::spawn_blocking(move || {
            let mut items = Vec::new();
            f(&mut conn, &mut items);
            (conn, items)
        });
        tokio::pin!(task);
        let (conn, items) = tokio::select! {
            r = &mut task => r.expect("request task"),
            _ = token.cancelled() => {
                cancel.cancel();
                task.await.expect("request task")
            }
        };
        let after_tx = conn.in_transaction();
        s.conn = Some(conn);
        write_items(items, out, rpc, &mut s.tx, before_tx, after_tx).await;
    }
}

/// The end of one RPC call: RETURNSTATUS (unless the call produced its own), then DONEPROC.
/// The OUTPUT parameters of an RPC: (ordinal in the RPC, variable name, the client's declared wire type).
#[derive(Default)]
struct OutputParams(Vec<(u16, String, SqlType)>);

impl OutputParams {
    /// `params` are the RPC's values from `skip` on, already named by `named`.
    fn of(rpc: &RpcRequest, skip: usize, params: &[(String, DataType, Value)]) -> OutputParams {
        OutputParams(
            rpc.params
                .iter()
                .enumerate()
                .skip(skip)
                .filter(|(_, p)| p.output)
                .filter_map(|(i, p)| {
                    let (name, _, _) = params.get(i - skip)?;
                    Some((i as u16, name.clone(), p.ty))
                })
                .collect(),
        )
    }
    fn names(&self) -> Vec<String> {
        self.0.iter().map(|(_, n, _)| n.clone()).collect()
    }
}

/// RETURNSTATUS, a RETURNVALUE per OUTPUT parameter, DONEPROC.
fn end_rpc_with(
    out: &mut ResponseWriter<'_>,
    status: i32,
    outputs: &OutputParams,
    values: &[Value],
) {
    if out.is_cancelled() {
        return;
    }
    out.return_status(status);
    for ((ordinal, name, ty), v) in outputs.0.iter().zip(values) {
        let w = wire_value(v, &type_of_wire(ty)).unwrap_or(SqlValue::Null);
        let name = if name.starts_with('@') {
            name.clone()
        } else {
            format!("@{name}")
        };
        if out.return_value(*ordinal, &name, ty, &w).is_err() {
            let _ = out.return_value(*ordinal, &name, ty, &SqlValue::Null);
        }
    }
    out.done_proc(None);
}

fn end_rpc(out: &mut ResponseWriter<'_>, status: i32) {
    if out.is_cancelled() {
        return;
    }
    out.return_status(status);
    out.done_proc(None);
}

async fn write_items(
    items: Vec<Out>,
    out: &mut ResponseWriter<'_>,
    rpc: bool,
    tx: &mut TxIds,
    before_tx: bool,
    after_tx: bool,
) {
    let mut cols: Vec<DataType> = Vec::new();
    let mut tx_reported = false;
    let mut failed_result = false;
    for it in items {
        if out.is_cancelled() {
            return;
        }
        match it {
            Out::Columns(c) => {
                failed_result = false;
                cols = c.iter().map(|(_, t)| *t).collect();
                out.columns(
                    c.into_iter()
                        .map(|(n, t)| Column::new(n, wire_type(&t)))
                        .collect(),
                );
            }
            Out::Row(_) if failed_result => {}
            Out::Row(r) => {
                let mut vals = Vec::with_capacity(r.len());
                for (i, v) in r.iter().enumerate() {
                    let ty = cols.get(i).cloned().unwrap_or(DataType::Int);
                    match wire_value(v, &ty) {
                        Ok(w) => vals.push(w),
                        Err(e) => {
                            // Never a silently different value: the statement fails like SQL Server's would.
                            failed_result = true;
                            out.error(e.number, e.severity, e.state, &e.message);
                            break;
                        }
                    }
                }
                if failed_result {
                    continue;
                }
                if out.send_row(&vals).await.is_err() {
                    return;
                }
            }
            Out::Done(n) if rpc => out.done_in_proc(n),
            Out::DoneDml(n, cmd) => out.done_token(
                if rpc {
                    DoneKind::DoneInProc
                } else {
                    DoneKind::Done
                },
                0,
                cmd,
                Some(n),
            ),
            Out::Done(n) => out.done(n),
            Out::Info(n, m) => out.info(n, &m),
            Out::Message(e) => out.message(Message {
                number: e.number,
                state: e.state,
                class: e.severity.min(10),
                text: e.message,
                server: String::new(),
                procedure: String::new(),
                line: e.line.max(1),
            }),
            Out::Error(e) => {
                let mut m = Message::error(e.number, e.severity.max(11), e.state, e.message);
                m.line = e.line.max(1);
                out.message(m);
            }
            Out::Database(d) => out.env_change(EnvChange::Database {
                old: String::new(),
                new: d,
            }),
            Out::TranBegin => {
                tx_reported = true;
                out.set_in_transaction(true);
                out.env_change(EnvChange::BeginTransaction {
                    descriptor: tx.begin(),
                });
            }
            Out::TranCommit => {
                tx_reported = true;
                out.set_in_transaction(false);
                out.env_change(EnvChange::CommitTransaction {
                    descriptor: tx.end(),
                });
            }
            Out::TranRollback => {
                tx_reported = true;
                out.set_in_transaction(false);
                out.env_change(EnvChange::RollbackTransaction {
                    descriptor: tx.end(),
                });
            }
            Out::ReturnStatus(s) => out.return_status(s),
        }
    }
    if !tx_reported && before_tx != after_tx {
        out.set_in_transaction(after_tx);
        out.env_change(if after_tx {
            EnvChange::BeginTransaction {
                descriptor: tx.begin(),
            }
        } else {
            EnvChange::RollbackTransaction {
                descriptor: tx.end(),
            }
        });
    }
}

fn params_of(rpc: &RpcRequest, skip: usize) -> Vec<(String, DataType, Value)> {
    rpc.params
        .iter()
        .skip(skip)
        .map(|p| (p.name.clone(), type_of_wire(&p.ty), from_wire(&p.value)))
        .collect()
}

fn text_param(rpc: &RpcRequest, i: usize) -> String {
    match rpc.params.get(i).map(|p| &p.value) {
        Some(SqlValue::NVarChar(s)) | Some(SqlValue::VarChar(s)) => s.clone(),
        _ => String::new(),
    }
}

fn int_param(rpc: &RpcRequest, i: usize) -> i32 {
    match rpc.params.get(i).map(|p| &p.value) {
        Some(SqlValue::Int(x)) => *x,
        Some(SqlValue::BigInt(x)) => *x as i32,
        Some(SqlValue::SmallInt(x)) => *x as i32,
        Some(SqlValue::TinyInt(x)) => *x as i32,
        _ => 0,
    }
}

/// Parameter names declared in sp_executesql / sp_prepare definitions, in order, for positional values.
fn named(defs: &str, vals: Vec<(String, DataType, Value)>) -> Vec<(String, DataType, Value)> {
    let decl = tsql::parse_param_definitions(defs).unwrap_or_default();
    vals.into_iter()
        .enumerate()
        .map(|(i, (n, t, v))| {
            let d = if n.is_empty() {
                decl.get(i)
            } else {
                decl.iter().find(|d| d.name.eq_ignore_ascii_case(&n))
            };
            match d {
                Some(d) => (
                    d.name.clone(),
                    d.ty,
                    tsql::value::assign(&v, &d.ty).unwrap_or(v),
                ),
                None => (
                    if n.is_empty() {
                        format!("@P{}", i + 1)
                    } else {
                        n
                    },
                    t,
                    v,
                ),
            }
        })
        .collect()
}

impl Handler for Endpoint {
    type Session = Session;

    async fn login(&self, login: &Login7, info: &ConnInfo) -> Result<LoginOk<Session>, LoginError> {
        let server = self.server.clone();
        let user = login.username.clone();
        let pw = login.password.clone();
        let database = login.database.clone();
        let spid = info.spid as i32;
        let r = tokio::task::spawn_blocking(move || {
            if !crate::logins::verify(&server.inst, &user, &pw) {
                return Err(LoginError::login_failed(&user));
            }
            let mut conn = Conn::new(server, spid, &user).map_err(|e| LoginError::other(e.number, 14, &e.message))?;
            if !database.is_empty() && !database.eq_ignore_ascii_case("master") {
                conn.use_database(&database).map_err(|e| {
                    LoginError::other(4060, 11, format!("Cannot open database \"{database}\" requested by the login. The login failed. ({})", e.message))
                })?;
            }
            Ok(conn)
        })
        .await
        .map_err(|_| LoginError::other(18456, 14, "login failed"))??;
        let db = r.database();
        Ok(LoginOk::new(
            Session {
                conn: Some(Box::new(r)),
                tx: TxIds::default(),
            },
            db,
        ))
    }

    async fn batch(&self, s: &mut Session, batch: SqlBatch, out: &mut ResponseWriter<'_>) {
        let sql = batch.sql;
        self.run(s, out, false, move |c, items| c.execute_batch(&sql, items))
            .await
    }

    async fn rpc(&self, s: &mut Session, rpc: RpcRequest, out: &mut ResponseWriter<'_>) {
        let id = rpc.proc_id();
        tracing::debug!(target = ?rpc.target, params = rpc.params.len(), "rpc");
        match id {
            Some(ProcId::ExecuteSql) => {
                let sql = text_param(&rpc, 0);
                let defs = text_param(&rpc, 1);
                let params = named(&defs, params_of(&rpc, 2));
                let outputs = OutputParams::of(&rpc, 2, &params);
                let names = outputs.names();
                let finals = Arc::new(std::sync::Mutex::new(Vec::new()));
                let f2 = finals.clone();
                self.run(s, out, true, move |c, items| {
                    *f2.lock().unwrap() = c.execute_sql_with_outputs(&sql, params, &names, items);
                })
                .await;
                let finals = std::mem::take(&mut *finals.lock().unwrap());
                end_rpc_with(out, 0, &outputs, &finals);
            }
            Some(ProcId::Prepare) | Some(ProcId::PrepExec) => {
                // sp_prepare(@handle OUTPUT, @params, @stmt, @options) / sp_prepexec(@handle OUTPUT, @params, @stmt, …values)
                let defs = text_param(&rpc, 1);
                let sql = text_param(&rpc, 2);
                let exec = id == Some(ProcId::PrepExec);
                let params = if exec {
                    named(&defs, params_of(&rpc, 3))
                } else {
                    vec![]
                };
                let handle = Arc::new(std::sync::Mutex::new(0));
                let h2 = handle.clone();
                self.run(s, out, true, move |c, items| {
                    *h2.lock().unwrap() = c.prepare(&defs, &sql);
                    if exec {
                        c.execute_sql_with_params(&sql, params, items);
                    }
                })
                .await;
                let h = *handle.lock().unwrap();
                if !out.is_cancelled() {
                    out.return_status(0);
                    let _ = out.return_value(0, "@handle", &SqlType::Int, &SqlValue::Int(h));
                    out.done_proc(None);
                }
            }
            Some(ProcId::Execute) => {
                let h = int_param(&rpc, 0);
                let vals = params_of(&rpc, 1);
                let finals = Arc::new(std::sync::Mutex::new((Vec::new(), None)));
                let f2 = finals.clone();
                let rpc2 = rpc.clone();
                self.run(s, out, true, move |c, items| match c.prepared(h) {
                    Some((defs, sql)) => {
                        let params = named(&defs, vals);
                        let outputs = OutputParams::of(&rpc2, 1, &params);
                        let names = outputs.names();
                        let v = c.execute_sql_with_outputs(&sql, params, &names, items);
                        *f2.lock().unwrap() = (v, Some(outputs));
                    }
                    None => items.push(Out::Error(tsql::SqlError::new(
                        8179,
                        16,
                        format!("Could not find prepared statement with handle {h}."),
                    ))),
                })
                .await;
                let (v, outputs) = std::mem::take(&mut *finals.lock().unwrap());
                end_rpc_with(out, 0, &outputs.unwrap_or_default(), &v);
            }
            Some(ProcId::Unprepare) => {
                let h = int_param(&rpc, 0);
                self.run(s, out, true, move |c, _| c.unprepare(h)).await;
                end_rpc(out, 0);
            }
            _ => {
                let name = match &rpc.target {
                    RpcTarget::Name(n) => n.clone(),
                    RpcTarget::Id(p) => format!("{p:?}"),
                };
                // Any other procedure: run it as EXEC with the RPC's parameters bound by name.
                let params = params_of(&rpc, 0);
                let args: Vec<String> = params
                    .iter()
                    .enumerate()
                    .map(|(i, (n, _, _))| {
                        if n.is_empty() {
                            format!("@__p{i}")
                        } else {
                            format!("{n} = {n}")
                        }
                    })
                    .collect();
                let bound: Vec<(String, DataType, Value)> = params
                    .into_iter()
                    .enumerate()
                    .map(|(i, (n, t, v))| (if n.is_empty() { format!("@__p{i}") } else { n }, t, v))
                    .collect();
                let sql = format!("EXEC {} {}", name, args.join(", "));
                self.run(s, out, true, move |c, items| {
                    c.execute_sql_with_params(&sql, bound, items)
                })
                .await;
                if !out.is_cancelled() {
                    out.done_proc(None);
                }
            }
        }
    }

    async fn tm(&self, s: &mut Session, req: TmRequest, out: &mut ResponseWriter<'_>) {
        self.run(s, out, false, move |c, items| {
            let r = match req {
                TmRequest::Begin { .. } => {
                    c.session.begin_tran();
                    items.push(Out::TranBegin);
                    Ok(())
                }
                TmRequest::Commit { then_begin, .. } => c.session.commit_tran().map(|_| {
                    items.push(Out::TranCommit);
                    if then_begin.is_some() {
                        c.session.begin_tran();
                        items.push(Out::TranBegin);
                    }
                }),
                TmRequest::Rollback { then_begin, .. } => c.session.rollback_tran().map(|_| {
                    items.push(Out::TranRollback);
                    if then_begin.is_some() {
                        c.session.begin_tran();
                        items.push(Out::TranBegin);
                    }
                }),
                _ => Ok(()),
            };
            if let Err(e) = r {
                items.push(Out::Error(crate::exec::engine_err_sql(e)));
            }
        })
        .await
    }

    async fn reset(&self, s: &mut Session, keep_transaction: bool) {
        if let Some(c) = s.conn.as_mut() {
            c.reset(keep_transaction);
            if !c.in_transaction() {
                s.tx.current = 0;
            }
        }
    }
}
