//! System views, materialised per query into the session connection's TEMP schema (or the attached in-memory
//! msdb), from the engine's live state. Temp tables touch no database file: nothing here is logged or replicated.

use crate::exec::Conn;
use crate::values::to_sqlite;
use tsql::types::Len;
use tsql::{DataType, SqlError, Value};

type Col = (&'static str, DataType);

fn sysname() -> DataType {
    DataType::SysName
}
fn nv(n: u32) -> DataType {
    DataType::NVarChar(Len::N(n))
}
fn lsn_type() -> DataType {
    DataType::Decimal {
        precision: 25,
        scale: 0,
        numeric: true,
    }
}

struct View {
    /// The translator's table key, and the SQLite schema it lives in.
    key: &'static str,
    schema: &'static str,
    cols: Vec<Col>,
}

fn views() -> Vec<View> {
    use DataType::*;
    vec![
        View {
            key: "sys.databases",
            schema: "temp",
            cols: vec![
                ("name", sysname()),
                ("database_id", Int),
                ("source_database_id", Int),
                ("create_date", DateTime),
                ("compatibility_level", TinyInt),
                ("collation_name", sysname()),
                ("user_access", TinyInt),
                ("user_access_desc", nv(60)),
                ("is_read_only", Bit),
                ("state", TinyInt),
                ("state_desc", nv(60)),
                ("recovery_model", TinyInt),
                ("recovery_model_desc", nv(60)),
                ("log_reuse_wait", TinyInt),
                ("log_reuse_wait_desc", nv(60)),
                ("is_encrypted", Bit),
                ("group_database_id", UniqueIdentifier),
                ("replica_id", UniqueIdentifier),
            ],
        },
        View {
            key: "sys.dm_db_log_space_usage",
            schema: "temp",
            cols: vec![
                ("database_id", Int),
                ("total_log_size_in_bytes", BigInt),
                ("used_log_space_in_bytes", BigInt),
                ("used_log_space_in_percent", Real),
                ("log_space_in_bytes_since_last_backup", BigInt),
            ],
        },
        View {
            key: "sys.dm_db_log_stats",
            schema: "temp",
            cols: vec![
                ("database_id", Int),
                ("recovery_model", nv(60)),
                ("log_min_lsn", nv(24)),
                ("log_end_lsn", nv(24)),
                ("current_vlf_sequence_number", BigInt),
                ("current_vlf_size_mb", Float),
                ("total_vlf_count", BigInt),
                ("total_log_size_mb", Float),
                ("active_vlf_count", BigInt),
                ("active_log_size_mb", Float),
                ("log_truncation_holdup_reason", nv(60)),
                ("log_backup_time", DateTime),
                ("log_backup_lsn", nv(24)),
                ("log_since_last_log_backup_mb", Float),
                ("log_checkpoint_lsn", nv(24)),
                ("log_since_last_checkpoint_mb", Float),
                ("recovery_vlf_count", BigInt),
            ],
        },
        View {
            key: "sys.tables",
            schema: "temp",
            cols: vec![
                ("name", sysname()),
                ("object_id", Int),
                ("schema_id", Int),
                ("type", DataType::Char(2)),
                ("type_desc", nv(60)),
                ("create_date", DateTime),
            ],
        },
        View {
            key: "backupset",
            schema: "msdb",
            cols: vec![
                ("backup_set_id", Int),
                ("name", nv(128)),
                ("database_name", nv(128)),
                ("type", DataType::Char(1)),
                ("first_lsn", lsn_type()),
                ("last_lsn", lsn_type()),
                ("database_backup_lsn", lsn_type()),
                ("checkpoint_lsn", lsn_type()),
                ("is_copy_only", Bit),
                ("backup_start_date", DateTime),
                ("backup_finish_date", DateTime),
                (
                    "backup_size",
                    DataType::Decimal {
                        precision: 20,
                        scale: 0,
                        numeric: true,
                    },
                ),
                (
                    "compressed_backup_size",
                    DataType::Decimal {
                        precision: 20,
                        scale: 0,
                        numeric: true,
                    },
                ),
                ("physical_device_name", nv(260)),
            ],
        },
    ]
}

/// Declared column types of every system view, for the translator.
pub fn catalog() -> Vec<(&'static str, Vec<(String, DataType)>)> {
    views()
        .into_iter()
        .map(|v| {
            (
                v.key,
                v.cols
                    .into_iter()
                    .map(|(n, t)| (n.to_string(), t))
                    .collect(),
            )
        })
        .collect()
}

pub fn lsn(l: u64) -> Value {
    tsql::value::convert(&Value::VarChar(engine::lsn_numeric(l)), &lsn_type(), None)
        .unwrap_or(Value::Null)
}

fn text(s: &str) -> Value {
    Value::NVarChar(s.to_string())
}

fn dt(s: &str) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    tsql::value::convert(&Value::VarChar(s.to_string()), &DataType::DateTime, None)
        .unwrap_or(Value::Null)
}

pub fn reuse_code(reason: &str) -> i32 {
    match reason {
        "NOTHING" => 0,
        "CHECKPOINT" => 1,
        "LOG_BACKUP" => 2,
        "ACTIVE_BACKUP_OR_RESTORE" => 3,
        "ACTIVE_TRANSACTION" => 4,
        "AVAILABILITY_REPLICA" => 9,
        _ => 16,
    }
}

fn rows_for(conn: &mut Conn, key: &str) -> Result<Vec<Vec<Value>>, SqlError> {
    let inst = conn.server.inst.clone();
    let mb = |b: u64| Value::Float(b as f64 / 1048576.0);
    Ok(match key {
        "sys.databases" => {
            let mut rows = Vec::new();
            for (id, n) in [(1, "master"), (2, "tempdb"), (3, "model"), (4, "msdb")] {
                rows.push(vec![
                    text(n),
                    Value::Int(id),
                    Value::Null,
                    dt("2003-04-08 09:13:36"),
                    Value::TinyInt(160),
                    text("SQL_Latin1_General_CP1_CI_AS"),
                    Value::TinyInt(0),
                    text("MULTI_USER"),
                    Value::Bit(false),
                    Value::TinyInt(0),
                    text("ONLINE"),
                    Value::TinyInt(if n == "model" { 1 } else { 3 }),
                    text(if n == "model" { "FULL" } else { "SIMPLE" }),
                    Value::TinyInt(0),
                    text("NOTHING"),
                    Value::Bit(false),
                    Value::Null,
                    Value::Null,
                ]);
            }
            for d in inst.databases() {
                rows.push(vec![
                    text(&d.name),
                    Value::Int(d.database_id),
                    Value::Null,
                    dt(&d.create_date),
                    Value::TinyInt(160),
                    text("SQL_Latin1_General_CP1_CI_AS"),
                    Value::TinyInt(0),
                    text("MULTI_USER"),
                    Value::Bit(false),
                    Value::TinyInt(match d.state_desc {
                        "ONLINE" => 0,
                        "RESTORING" => 1,
                        _ => 4,
                    }),
                    text(d.state_desc),
                    Value::TinyInt(if d.recovery_model_desc == "FULL" {
                        1
                    } else {
                        3
                    }),
                    text(d.recovery_model_desc),
                    Value::TinyInt(reuse_code(d.log_reuse_wait_desc) as u8),
                    text(d.log_reuse_wait_desc),
                    Value::Bit(false),
                    Value::Null,
                    Value::Null,
                ]);
            }
            rows
        }
        "sys.dm_db_log_space_usage" => {
            let db = conn.database();
            match inst.database(&db) {
                Ok(d) => {
                    let s = d.log_space();
                    vec![vec![
                        Value::Int(d.id),
                        Value::BigInt(s.total_bytes as i64),
                        Value::BigInt(s.used_bytes as i64),
                        Value::Real(s.used_percent() as f32),
                        Value::BigInt(s.since_last_backup_bytes as i64),
                    ]]
                }
                Err(_) => vec![],
            }
        }
        "sys.dm_db_log_stats" => inst
            .open_databases()
            .into_iter()
            .map(|d| {
                let s = d.log_space();
                vec![
                    Value::Int(d.id),
                    text(s.recovery_model.desc()),
                    text(&engine::lsn_numeric(s.log_min_lsn)),
                    text(&engine::lsn_numeric(s.log_end_lsn)),
                    Value::BigInt(s.log_end_lsn as i64),
                    mb(s.retained_bytes),
                    Value::BigInt(1),
                    mb(s.total_bytes),
                    Value::BigInt(1),
                    mb(s.used_bytes),
                    text(s.truncation_holdup),
                    Value::Null,
                    text(&engine::lsn_numeric(s.last_log_backup_lsn)),
                    mb(s.since_last_backup_bytes),
                    text(&engine::lsn_numeric(s.checkpoint_lsn)),
                    mb(s.since_checkpoint_bytes),
                    Value::BigInt(1),
                ]
            })
            .collect(),
        "sys.tables" => {
            let db = conn.database();
            if db == "master" {
                vec![]
            } else {
                let r = conn
                    .session
                    .query(
                        "SELECT name, rowid FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_\\_milink%' ESCAPE '\\' ORDER BY lower(name)",
                        &[],
                    )
                    .map_err(crate::exec::engine_err_sql)?;
                r.rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, row)| {
                        let name = match &row[0] {
                            rusqlite::types::Value::Text(t) => t.clone(),
                            _ => String::new(),
                        };
                        vec![
                            text(&name),
                            Value::Int(1_000_000 + i as i32),
                            Value::Int(1),
                            Value::VarChar("U ".into()),
                            text("USER_TABLE"),
                            Value::Null,
                        ]
                    })
                    .collect()
            }
        }
        "backupset" => {
            let mut rows = Vec::new();
            let mut id = 0;
            for d in inst.databases() {
                for b in inst
                    .backup_history(&d.name)
                    .map_err(crate::exec::engine_err_sql)?
                {
                    id += 1;
                    rows.push(vec![
                        Value::Int(id),
                        b.name.as_deref().map(text).unwrap_or(Value::Null),
                        text(&b.database_name),
                        Value::VarChar(b.backup_type.clone()),
                        lsn(b.first_lsn),
                        lsn(b.last_lsn),
                        lsn(b.database_backup_lsn),
                        lsn(b.checkpoint_lsn),
                        Value::Bit(b.is_copy_only),
                        dt(&b.backup_start_date),
                        dt(&b.backup_finish_date),
                        lsn_plain(b.backup_size),
                        lsn_plain(b.compressed_backup_size),
                        text(&b.physical_device_name),
                    ]);
                }
            }
            rows
        }
        _ => vec![],
    })
}

fn lsn_plain(n: u64) -> Value {
    tsql::value::convert(
        &Value::BigInt(n as i64),
        &DataType::Decimal {
            precision: 20,
            scale: 0,
            numeric: true,
        },
        None,
    )
    .unwrap_or(Value::Null)
}

/// Fill the system views a translated statement reads.
pub fn materialise(conn: &mut Conn, sql: &str) -> Result<(), SqlError> {
    for v in views() {
        let quoted = format!("\"{}\"", v.key);
        let hit = if v.schema == "msdb" {
            sql.contains("\"msdb\".") && sql.contains(&quoted)
        } else {
            sql.contains(&quoted)
        };
        if !hit {
            continue;
        }
        let rows = rows_for(conn, v.key)?;
        let db = conn.database();
        let c: &rusqlite::Connection = if db == "master" {
            conn.mem()
        } else {
            conn.session
                .temp_connection(&db)
                .map_err(crate::exec::engine_err_sql)?
        };
        fill(c, &v, &rows)
            .map_err(|e| SqlError::new(50000, 16, format!("system view {}: {e}", v.key)))?;
    }
    Ok(())
}

fn fill(c: &rusqlite::Connection, v: &View, rows: &[Vec<Value>]) -> rusqlite::Result<()> {
    if v.schema == "msdb" {
        let attached: i64 = c.query_row(
            "SELECT count(*) FROM pragma_database_list WHERE name = 'msdb'",
            [],
            |r| r.get(0),
        )?;
        if attached == 0 {
            c.execute_batch("ATTACH DATABASE ':memory:' AS msdb")?;
        }
    }
    let target = format!("{}.\"{}\"", v.schema, v.key);
    let cols: Vec<String> = v
        .cols
        .iter()
        .map(|(n, t)| format!("\"{n}\" {}", t.sqlite_affinity()))
        .collect();
    c.execute_batch(&format!(
        "DROP TABLE IF EXISTS {target}; CREATE TABLE {target}({});",
        cols.join(", ")
    ))?;
    let marks: Vec<String> = (1..=v.cols.len()).map(|i| format!("?{i}")).collect();
    let mut st = c.prepare(&format!(
        "INSERT INTO {target} VALUES ({})",
        marks.join(", ")
    ))?;
    for r in rows {
        st.execute(rusqlite::params_from_iter(r.iter().map(to_sqlite)))?;
    }
    Ok(())
}
