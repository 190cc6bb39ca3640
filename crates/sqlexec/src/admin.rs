//! Instance-level statements: databases, recovery model, BACKUP/RESTORE, DBCC, CHECKPOINT, logins, and the
//! system procedures a client may EXEC.

use crate::exec::{display, engine_err_sql, Conn, Out};
use crate::logins;
use crate::sysviews::lsn;
use engine::backup::{self, BackupOptions, RestoreOptions};
use std::path::PathBuf;
use tsql::admin::{find_opt, Admin, AlterDatabaseAction, BackupKind, DbName, Opt, RestoreKind};
use tsql::types::Len;
use tsql::{DataType, SqlError, Value};

fn not_yet(what: &str, line: u32) -> SqlError {
    SqlError::new(
        40000,
        16,
        format!("{what} is not available in this milink build yet (certificates, endpoints and availability groups are being built)."),
    )
    .at_line(line)
}

fn db_name(conn: &mut Conn, d: &DbName) -> Result<String, SqlError> {
    Ok(match d {
        DbName::Name(i) => i.value.clone(),
        DbName::Variable(v) => display(&conn.eval(&tsql::Expr::Variable(v.clone()))?),
    })
}

fn opt_text(conn: &mut Conn, o: &Opt) -> Result<Option<String>, SqlError> {
    if let Some(e) = o.expr() {
        return Ok(Some(display(&conn.eval(e)?)));
    }
    Ok(o.word())
}

fn has(opts: &[Opt], name: &str) -> bool {
    find_opt(opts, name).is_some()
}

fn stats(conn: &mut Conn, opts: &[Opt]) -> Result<Option<u32>, SqlError> {
    match find_opt(opts, "STATS") {
        None => Ok(None),
        Some(o) => Ok(Some(
            opt_text(conn, o)?
                .and_then(|s| s.parse().ok())
                .unwrap_or(10),
        )),
    }
}

fn device(conn: &mut Conn, devices: &[tsql::admin::Device]) -> Result<PathBuf, SqlError> {
    let d = devices
        .first()
        .ok_or_else(|| SqlError::new(3201, 16, "A backup device is required."))?;
    if devices.len() > 1 {
        return Err(SqlError::new(
            3010,
            16,
            "Striped backup sets (several devices) are not supported: use one DISK.",
        ));
    }
    if d.kind != tsql::admin::DeviceKind::Disk {
        return Err(SqlError::new(
            3201,
            16,
            "Only DISK backup devices are supported.",
        ));
    }
    Ok(PathBuf::from(display(&conn.eval(&d.path)?)))
}

pub fn run(conn: &mut Conn, a: &Admin, line: u32, out: &mut Vec<Out>) -> Result<(), SqlError> {
    if crate::trustsql::run(conn, a, out)?
        || crate::ags::run(conn, a, out)?
        || crate::endpoints::run(conn, a, out)?
    {
        return Ok(());
    }
    let inst = conn.server.inst.clone();
    match a {
        Admin::CreateDatabase { name, .. } => {
            inst.create_database(&name.value).map_err(engine_err_sql)?;
        }
        Admin::DropDatabase { if_exists, names } => {
            for n in names {
                if n.value.eq_ignore_ascii_case(&conn.database()) {
                    return Err(SqlError::new(
                        3702,
                        16,
                        format!(
                            "Cannot drop database \"{}\" because it is currently in use.",
                            n.value
                        ),
                    ));
                }
                match inst.drop_database(&n.value) {
                    Err(e) if e.number == 3701 && *if_exists => {}
                    r => r.map_err(engine_err_sql)?,
                }
            }
        }
        Admin::AlterDatabase { name, action } => {
            let n = name
                .as_ref()
                .map(|n| n.value.clone())
                .unwrap_or_else(|| conn.database());
            let db = inst.database(&n).map_err(engine_err_sql)?;
            match action {
                AlterDatabaseAction::SetRecovery(m) => {
                    let model = match m.as_str() {
                        "FULL" | "BULK_LOGGED" => engine::RecoveryModel::Full,
                        _ => engine::RecoveryModel::Simple,
                    };
                    db.set_recovery_model(model).map_err(engine_err_sql)?;
                }
                AlterDatabaseAction::Set { options, .. } => {
                    for o in options {
                        match o.name.as_str() {
                            "MAX_LOG_SIZE_MB" | "MILINK_MAX_LOG_SIZE_MB" => {
                                let mb: u64 =
                                    opt_text(conn, o)?.and_then(|s| s.parse().ok()).unwrap_or(0);
                                db.set_max_log_bytes(mb << 20).map_err(engine_err_sql)?;
                            }
                            "RECOVERY" => {
                                let w = o.word().unwrap_or_default();
                                db.set_recovery_model(if w == "SIMPLE" {
                                    engine::RecoveryModel::Simple
                                } else {
                                    engine::RecoveryModel::Full
                                })
                                .map_err(engine_err_sql)?;
                            }
                            // Session-level database options (ANSI_*, COMPATIBILITY_LEVEL, …) change nothing here.
                            _ => {}
                        }
                    }
                }
                AlterDatabaseAction::SetHadrAvailabilityGroup(_)
                | AlterDatabaseAction::SetHadrOff
                | AlterDatabaseAction::SetHadrResume
                | AlterDatabaseAction::SetHadrSuspend => {
                    return Err(not_yet("ALTER DATABASE ... SET HADR", line))
                }
                AlterDatabaseAction::ModifyName(_) => {
                    return Err(SqlError::unsupported("ALTER DATABASE MODIFY NAME", line))
                }
                AlterDatabaseAction::Collate(_) => {
                    return Err(SqlError::unsupported("ALTER DATABASE COLLATE", line))
                }
            }
        }
        Admin::Backup(b) => {
            let dbn = db_name(conn, &b.database)?;
            let path = device(conn, &b.devices)?;
            let opts = BackupOptions {
                name: find_opt(&b.options, "NAME")
                    .map(|o| opt_text(conn, o))
                    .transpose()?
                    .flatten(),
                description: find_opt(&b.options, "DESCRIPTION")
                    .map(|o| opt_text(conn, o))
                    .transpose()?
                    .flatten(),
                copy_only: has(&b.options, "COPY_ONLY"),
                init: has(&b.options, "INIT") || has(&b.options, "FORMAT"),
                stats_percent: stats(conn, &b.options)?,
            };
            let what = match b.kind {
                BackupKind::Database => "DATABASE",
                BackupKind::Log => "LOG",
            };
            run_with_progress("BACKUP", what, &dbn, out, |progress| match b.kind {
                BackupKind::Database => {
                    backup::backup_database(&inst, &dbn, &path, &opts, progress)
                }
                BackupKind::Log => backup::backup_log(&inst, &dbn, &path, &opts, progress),
            })?;
        }
        Admin::Restore(r) => return restore(conn, r, out),
        Admin::Dbcc { name, args, .. } => return dbcc(conn, name, args, out),
        Admin::Checkpoint(_) => {
            let db = conn.database();
            if db != "master" {
                inst.database(&db)
                    .map_err(engine_err_sql)?
                    .checkpoint()
                    .map_err(engine_err_sql)?;
            }
        }
        Admin::CreateLogin {
            name,
            password,
            options,
            source,
        } => {
            if source.is_some() {
                return Err(SqlError::new(15407, 16, format!("'{}' is not a valid Windows NT name: only SQL Server authentication exists here.", name.value)));
            }
            let pw = match password {
                Some(p) => display(&conn.eval(p)?),
                None => {
                    return Err(SqlError::new(
                        15021,
                        16,
                        "CREATE LOGIN needs WITH PASSWORD here.",
                    ))
                }
            };
            let check = find_opt(options, "CHECK_POLICY")
                .and_then(|o| o.word())
                .map(|w| w != "OFF")
                .unwrap_or(true);
            logins::create(&inst, &name.value, &pw, check)?;
        }
        Admin::AlterLogin { name, action } => logins::alter(conn, &inst, &name.value, action)?,
        Admin::DropLogin { name } => logins::drop(&inst, &name.value)?,
        Admin::Kill(_) => return Err(SqlError::unsupported("KILL", line)),
        // Server configuration and database users have no effect here: one login owns everything it can reach.
        Admin::Reconfigure { .. }
        | Admin::CreateUser { .. }
        | Admin::DropUser { .. }
        | Admin::AlterRoleMember { .. } => {}
        Admin::Shutdown { .. } => {
            return Err(SqlError::unsupported(
                "SHUTDOWN (stop the milink process instead)",
                line,
            ))
        }
        Admin::BackupMasterKey { .. } => return Err(not_yet("BACKUP MASTER KEY", line)),
        Admin::CreateMasterKey { .. }
        | Admin::OpenMasterKey { .. }
        | Admin::CloseMasterKey
        | Admin::AlterMasterKey(_)
        | Admin::DropMasterKey => {
            return Err(SqlError::new(
                50000,
                16,
                "internal error: trustsql::run handles master key statements",
            ))
        }
        Admin::CreateCertificate(_)
        | Admin::BackupCertificate(_)
        | Admin::DropCertificate { .. } => {
            return Err(SqlError::new(
                50000,
                16,
                "internal error: trustsql::run handles certificate statements",
            ))
        }
        Admin::CreateEndpoint(_) | Admin::AlterEndpoint(_) | Admin::DropEndpoint { .. } => {
            return Err(not_yet("ENDPOINT", line))
        }
        Admin::CreateAvailabilityGroup(_)
        | Admin::AlterAvailabilityGroup { .. }
        | Admin::DropAvailabilityGroup { .. } => {
            return Err(SqlError::new(
                50000,
                16,
                "internal error: ags::run handles availability group statements",
            ))
        }
    }
    Ok(())
}

/// SQL Server follows a failed BACKUP/RESTORE with 3013 "... is terminating abnormally."; we fold it into the
/// message so clients that show one error still see both.
fn terminating(e: SqlError, what: &str) -> SqlError {
    let mut x = e.clone();
    x.message = format!("{} {what} is terminating abnormally.", e.message);
    x
}

fn restore(conn: &mut Conn, r: &tsql::admin::Restore, out: &mut Vec<Out>) -> Result<(), SqlError> {
    let inst = conn.server.inst.clone();
    if r.devices.is_empty() {
        // RESTORE DATABASE d WITH RECOVERY: bring a RESTORING database online.
        let dbn = r
            .database
            .as_ref()
            .map(|d| db_name(conn, d))
            .transpose()?
            .unwrap_or_default();
        backup::recover(&inst, &dbn).map_err(engine_err_sql)?;
        out.push(Out::Info(
            3014,
            "RESTORE DATABASE successfully processed 0 pages.".into(),
        ));
        return Ok(());
    }
    let path = device(conn, &r.devices)?;
    match r.kind {
        RestoreKind::HeaderOnly => {
            let h = backup::read_header(&path).map_err(engine_err_sql)?;
            let nv = |n| DataType::NVarChar(Len::N(n));
            let cols = vec![
                ("BackupName".to_string(), nv(128)),
                ("BackupDescription".into(), nv(255)),
                ("BackupType".into(), DataType::SmallInt),
                ("Compressed".into(), DataType::Bit),
                ("ServerName".into(), nv(128)),
                ("DatabaseName".into(), nv(128)),
                ("DatabaseVersion".into(), DataType::Int),
                (
                    "FirstLSN".into(),
                    DataType::Decimal {
                        precision: 25,
                        scale: 0,
                        numeric: true,
                    },
                ),
                (
                    "LastLSN".into(),
                    DataType::Decimal {
                        precision: 25,
                        scale: 0,
                        numeric: true,
                    },
                ),
                (
                    "CheckpointLSN".into(),
                    DataType::Decimal {
                        precision: 25,
                        scale: 0,
                        numeric: true,
                    },
                ),
                (
                    "DatabaseBackupLSN".into(),
                    DataType::Decimal {
                        precision: 25,
                        scale: 0,
                        numeric: true,
                    },
                ),
                ("BackupStartDate".into(), DataType::DateTime),
                ("BackupFinishDate".into(), DataType::DateTime),
                ("RecoveryModel".into(), nv(60)),
                ("IsCopyOnly".into(), DataType::Bit),
                ("BindingID".into(), DataType::UniqueIdentifier),
            ];
            let finish = backup::finish_time(&path).unwrap_or_default();
            let dt = |s: &str| {
                tsql::value::convert(&Value::VarChar(s.to_string()), &DataType::DateTime, None)
                    .unwrap_or(Value::Null)
            };
            let mut guid = [0u8; 16];
            if let Some(g) = engine::database::parse_guid_hex(&h.database_guid) {
                guid = g;
            }
            out.push(Out::Columns(cols));
            out.push(Out::Row(vec![
                Value::NVarChar(h.backup_name.clone()),
                Value::NVarChar(h.description.clone()),
                Value::SmallInt(if h.kind == backup::BackupKind::Database {
                    1
                } else {
                    2
                }),
                Value::Bit(true),
                Value::NVarChar(h.server_name.clone()),
                Value::NVarChar(h.database_name.clone()),
                Value::Int(957),
                lsn(h.first_lsn),
                lsn(h.last_lsn),
                lsn(h.checkpoint_lsn),
                lsn(h.database_backup_lsn),
                dt(&backup::start_time(&h)),
                dt(&finish),
                Value::NVarChar(h.recovery_model.desc().into()),
                Value::Bit(h.is_copy_only),
                Value::Guid(guid),
            ]));
            conn.out_done(out, Some(1));
            Ok(())
        }
        RestoreKind::VerifyOnly => {
            backup::verify(&path).map_err(|e| terminating(engine_err_sql(e), "VERIFY DATABASE"))?;
            out.push(Out::Info(
                3262,
                format!("The backup set on file 1 is valid. ({})", path.display()),
            ));
            Ok(())
        }
        RestoreKind::FileListOnly | RestoreKind::LabelOnly => {
            Err(SqlError::unsupported("RESTORE FILELISTONLY/LABELONLY", 0))
        }
        RestoreKind::Database | RestoreKind::Log => {
            let dbn = r
                .database
                .as_ref()
                .map(|d| db_name(conn, d))
                .transpose()?
                .unwrap_or_default();
            let stop_at_us = match find_opt(&r.options, "STOPAT") {
                None => None,
                Some(o) => {
                    let t = opt_text(conn, o)?.unwrap_or_default();
                    let v = tsql::value::convert(
                        &Value::VarChar(t.clone()),
                        &DataType::DateTime2(7),
                        None,
                    )
                    .map_err(|_| {
                        SqlError::new(
                            4335,
                            16,
                            format!(
                                "The specified STOPAT time '{t}' is not a valid date and time."
                            ),
                        )
                    })?;
                    match v {
                        // STOPAT is local server time, as in SQL Server.
                        Value::DateTime2(d, _) => {
                            let local = d
                                .and_local_timezone(chrono::Local)
                                .earliest()
                                .map(|x| x.timestamp_micros());
                            Some(local.unwrap_or_else(|| d.and_utc().timestamp_micros()))
                        }
                        _ => None,
                    }
                }
            };
            let opts = RestoreOptions {
                recovery: !has(&r.options, "NORECOVERY") && !has(&r.options, "STANDBY"),
                replace: has(&r.options, "REPLACE"),
                stop_at_us,
                stats_percent: stats(conn, &r.options)?,
            };
            let what = if r.kind == RestoreKind::Database {
                "DATABASE"
            } else {
                "LOG"
            };
            run_with_progress("RESTORE", what, &dbn, out, |progress| {
                if r.kind == RestoreKind::Database {
                    backup::restore_database(&inst, &dbn, &path, &opts, progress)
                } else {
                    backup::restore_log(&inst, &dbn, &path, &opts, progress)
                }
            })
        }
    }
}

/// Runs a BACKUP or RESTORE, then reports as SQL Server does: 3211 per STATS step, 4035 for the file and
/// 3014 with the rate. A failure keeps its own error, with "<verb> <what> is terminating abnormally." added.
fn run_with_progress(
    verb: &str,
    what: &str,
    dbn: &str,
    out: &mut Vec<Out>,
    run: impl FnOnce(backup::Progress) -> engine::Result<backup::Summary>,
) -> Result<(), SqlError> {
    let mut pcts = Vec::new();
    let r = run(&mut |p| pcts.push(p));
    for p in pcts {
        out.push(Out::Info(3211, format!("{p} percent processed.")));
    }
    let s = r.map_err(|e| terminating(engine_err_sql(e), &format!("{verb} {what}")))?;
    let units = if what == "DATABASE" {
        s.pages
    } else {
        s.blocks
    };
    out.push(Out::Info(
        4035,
        format!("Processed {units} pages for database '{dbn}', file '{dbn}' on file 1."),
    ));
    out.push(Out::Info(
        3014,
        format!(
            "{verb} {what} successfully processed {units} pages in {:.3} seconds ({:.3} MB/sec).",
            s.seconds,
            s.bytes as f64 / 1048576.0 / s.seconds.max(0.001)
        ),
    ));
    Ok(())
}

fn dbcc(
    conn: &mut Conn,
    name: &str,
    args: &[tsql::Expr],
    out: &mut Vec<Out>,
) -> Result<(), SqlError> {
    let inst = conn.server.inst.clone();
    let w0 = match args.first() {
        Some(tsql::Expr::Column(n)) => n
            .last()
            .map(|i| i.value.to_ascii_uppercase())
            .unwrap_or_default(),
        Some(e) => conn
            .eval(e)
            .map(|v| display(&v).to_ascii_uppercase())
            .unwrap_or_default(),
        None => String::new(),
    };
    match name.to_ascii_uppercase().as_str() {
        "SQLPERF" if w0.clone() == "LOGSPACE" => {
            out.push(Out::Columns(vec![
                ("Database Name".into(), DataType::NVarChar(Len::N(128))),
                ("Log Size (MB)".into(), DataType::Real),
                ("Log Space Used (%)".into(), DataType::Real),
                ("Status".into(), DataType::Int),
            ]));
            let mut n = 0;
            for d in inst.open_databases() {
                let s = d.log_space();
                out.push(Out::Row(vec![
                    Value::NVarChar(d.name.clone()),
                    Value::Real((s.total_bytes as f64 / 1048576.0) as f32),
                    Value::Real(s.used_percent() as f32),
                    Value::Int(0),
                ]));
                n += 1;
            }
            conn.out_done(out, Some(n));
            out.push(Out::Info(2528, "DBCC execution completed. If DBCC printed error messages, contact your system administrator.".into()));
            Ok(())
        }
        "TRACEON" | "TRACEOFF" => {
            out.push(Out::Info(2528, "DBCC execution completed. If DBCC printed error messages, contact your system administrator.".into()));
            Ok(())
        }
        "CHECKDB" => {
            let db = if args.is_empty() { conn.database() } else { w0.clone().to_lowercase() };
            let db = inst.database(&db).map_err(engine_err_sql)?;
            let r = conn.session.query("PRAGMA integrity_check", &[]).map_err(engine_err_sql)?;
            let ok = matches!(r.rows.first().and_then(|r| r.first()), Some(rusqlite::types::Value::Text(t)) if t == "ok");
            if !ok {
                return Err(SqlError::new(8928, 16, format!("DBCC CHECKDB found consistency errors in database '{}'.", db.name)));
            }
            out.push(Out::Info(8989, format!("CHECKDB found 0 allocation errors and 0 consistency errors in database '{}'.", db.name)));
            Ok(())
        }
        other => Err(SqlError::new(2526, 16, format!("Incorrect DBCC statement. Check the documentation for the correct DBCC syntax and options. (DBCC {other})"))),
    }
}

/// EXEC of a system procedure other than sp_executesql. Returns the procedure's return status.
pub fn system_procedure(
    conn: &mut Conn,
    name: &str,
    _args: &[(Option<String>, Value)],
    out: &mut Vec<Out>,
) -> Result<i32, SqlError> {
    let bare = name.trim_start_matches("sys.").trim_start_matches("dbo.");
    if let Some(r) = crate::trustsql::procedure(conn, bare, _args, out) {
        return r;
    }
    match bare {
        "sp_describe_undeclared_parameters" => crate::describe::run(conn, _args, out),
        "sp_who" | "sp_who2" => {
            out.push(Out::Columns(vec![
                ("spid".into(), DataType::SmallInt),
                ("loginame".into(), DataType::NVarChar(Len::N(128))),
                ("dbname".into(), DataType::NVarChar(Len::N(128))),
            ]));
            // Every live session, from the server's session registry.
            let mut sessions: Vec<(i32, crate::exec::SessionInfo)> = conn
                .server
                .sessions
                .lock()
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            sessions.sort_by_key(|s| s.0);
            let n = sessions.len() as u64;
            for (spid, info) in sessions {
                let db = info.shared.lock().database.clone();
                out.push(Out::Row(vec![
                    Value::SmallInt(spid as i16),
                    Value::NVarChar(info.login.clone()),
                    Value::NVarChar(db),
                ]));
            }
            conn.out_done(out, Some(n));
            Ok(0)
        }
        _ => Err(SqlError::new(
            2812,
            16,
            format!("Could not find stored procedure '{name}'."),
        )),
    }
}
