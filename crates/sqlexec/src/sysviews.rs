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
            key: "sys.objects",
            schema: "temp",
            cols: vec![
                ("name", sysname()),
                ("object_id", Int),
                ("principal_id", Int),
                ("schema_id", Int),
                ("parent_object_id", Int),
                ("type", DataType::Char(2)),
                ("type_desc", nv(60)),
                ("create_date", DateTime),
                ("modify_date", DateTime),
                ("is_ms_shipped", Bit),
            ],
        },
        View {
            key: "sys.dm_exec_sessions",
            schema: "temp",
            cols: vec![
                ("session_id", SmallInt),
                ("login_time", DateTime),
                ("host_name", nv(128)),
                ("program_name", nv(128)),
                ("login_name", nv(128)),
                ("status", nv(30)),
                ("database_id", SmallInt),
                ("is_user_process", Bit),
            ],
        },
        View {
            key: "sys.schemas",
            schema: "temp",
            cols: vec![
                ("name", sysname()),
                ("schema_id", Int),
                ("principal_id", Int),
            ],
        },
        View {
            key: "sys.columns",
            schema: "temp",
            cols: vec![
                ("object_id", Int),
                ("name", sysname()),
                ("column_id", Int),
                ("system_type_id", TinyInt),
                ("user_type_id", Int),
                ("max_length", SmallInt),
                ("precision", TinyInt),
                ("scale", TinyInt),
                ("collation_name", sysname()),
                ("is_nullable", Bit),
                ("is_identity", Bit),
            ],
        },
        View {
            key: "sys.types",
            schema: "temp",
            cols: vec![
                ("name", sysname()),
                ("system_type_id", TinyInt),
                ("user_type_id", Int),
                ("schema_id", Int),
                ("max_length", SmallInt),
                ("precision", TinyInt),
                ("scale", TinyInt),
                ("collation_name", sysname()),
                ("is_nullable", Bit),
                ("is_user_defined", Bit),
            ],
        },
        View {
            key: "information_schema.tables",
            schema: "temp",
            cols: vec![
                ("TABLE_CATALOG", nv(128)),
                ("TABLE_SCHEMA", nv(128)),
                ("TABLE_NAME", sysname()),
                ("TABLE_TYPE", DataType::VarChar(Len::N(10))),
            ],
        },
        View {
            key: "information_schema.columns",
            schema: "temp",
            cols: vec![
                ("TABLE_CATALOG", nv(128)),
                ("TABLE_SCHEMA", nv(128)),
                ("TABLE_NAME", sysname()),
                ("COLUMN_NAME", sysname()),
                ("ORDINAL_POSITION", Int),
                ("COLUMN_DEFAULT", nv(4000)),
                ("IS_NULLABLE", DataType::VarChar(Len::N(3))),
                ("DATA_TYPE", nv(128)),
                ("CHARACTER_MAXIMUM_LENGTH", Int),
                ("CHARACTER_OCTET_LENGTH", Int),
                ("NUMERIC_PRECISION", TinyInt),
                ("NUMERIC_SCALE", Int),
                ("DATETIME_PRECISION", SmallInt),
                ("COLLATION_NAME", sysname()),
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
        "sys.objects" => user_tables(conn)?
            .into_iter()
            .map(|(name, id)| {
                vec![
                    text(&name),
                    Value::Int(id),
                    Value::Null,
                    Value::Int(1),
                    Value::Int(0),
                    Value::VarChar("U ".into()),
                    text("USER_TABLE"),
                    Value::Null,
                    Value::Null,
                    Value::Bit(false),
                ]
            })
            .collect(),
        "sys.dm_exec_sessions" => {
            let me = conn.shared.lock().spid;
            let server = conn.server.clone();
            crate::exec::live_sessions(&server)
                .into_iter()
                .map(|(spid, login, db, at)| {
                    let db_id = match db.to_lowercase().as_str() {
                        "master" => 1,
                        "tempdb" => 2,
                        "model" => 3,
                        "msdb" => 4,
                        _ => inst.database_id(&db).map(|i| i as i16).unwrap_or(0),
                    };
                    vec![
                        Value::SmallInt(spid as i16),
                        Value::DateTime(at),
                        text(&server.host),
                        Value::Null,
                        text(&login),
                        text(if spid == me { "running" } else { "sleeping" }),
                        Value::SmallInt(db_id),
                        Value::Bit(true),
                    ]
                })
                .collect()
        }
        "sys.schemas" => [
            ("dbo", 1),
            ("guest", 2),
            ("INFORMATION_SCHEMA", 3),
            ("sys", 4),
        ]
        .into_iter()
        .map(|(n, id)| vec![text(n), Value::Int(id), Value::Int(id)])
        .collect(),
        "sys.columns" => {
            let ids: std::collections::HashMap<String, i32> = user_tables(conn)?
                .into_iter()
                .map(|(n, id)| (n.to_lowercase(), id))
                .collect();
            table_columns(conn)?
                .into_iter()
                .filter_map(|c| {
                    let id = *ids.get(&c.table.to_lowercase())?;
                    let f = crate::describe::type_facts(&c.ty);
                    Some(vec![
                        Value::Int(id),
                        text(&c.name),
                        Value::Int(c.ordinal),
                        Value::TinyInt(f.0 as u8),
                        Value::Int(f.0),
                        Value::SmallInt(f.1),
                        Value::TinyInt(f.2),
                        Value::TinyInt(f.3),
                        if c.ty.is_string() {
                            text("SQL_Latin1_General_CP1_CI_AS")
                        } else {
                            Value::Null
                        },
                        Value::Bit(c.nullable),
                        Value::Bit(c.identity),
                    ])
                })
                .collect()
        }
        "sys.types" => {
            use tsql::types::Len as L;
            let types = [
                ("image", DataType::Image),
                ("text", DataType::Text),
                ("uniqueidentifier", DataType::UniqueIdentifier),
                ("date", DataType::Date),
                ("time", DataType::Time(7)),
                ("datetime2", DataType::DateTime2(7)),
                ("datetimeoffset", DataType::DateTimeOffset(7)),
                ("tinyint", DataType::TinyInt),
                ("smallint", DataType::SmallInt),
                ("int", DataType::Int),
                ("smalldatetime", DataType::SmallDateTime),
                ("real", DataType::Real),
                ("money", DataType::Money),
                ("datetime", DataType::DateTime),
                ("float", DataType::Float),
                ("sql_variant", DataType::SqlVariant),
                ("ntext", DataType::NText),
                ("bit", DataType::Bit),
                (
                    "decimal",
                    DataType::Decimal {
                        precision: 18,
                        scale: 0,
                        numeric: false,
                    },
                ),
                (
                    "numeric",
                    DataType::Decimal {
                        precision: 18,
                        scale: 0,
                        numeric: true,
                    },
                ),
                ("smallmoney", DataType::SmallMoney),
                ("bigint", DataType::BigInt),
                ("varbinary", DataType::VarBinary(L::N(8000))),
                ("varchar", DataType::VarChar(L::N(8000))),
                ("binary", DataType::Binary(8000)),
                ("char", DataType::Char(8000)),
                ("nvarchar", DataType::NVarChar(L::N(4000))),
                ("nchar", DataType::NChar(4000)),
                ("xml", DataType::Xml),
                ("sysname", DataType::SysName),
            ];
            types
                .into_iter()
                .map(|(n, t)| {
                    let f = crate::describe::type_facts(&t);
                    let user_id = if n == "sysname" { 256 } else { f.0 };
                    vec![
                        text(n),
                        Value::TinyInt(f.0 as u8),
                        Value::Int(user_id),
                        Value::Int(4),
                        Value::SmallInt(f.1),
                        Value::TinyInt(f.2),
                        Value::TinyInt(f.3),
                        if t.is_string() {
                            text("SQL_Latin1_General_CP1_CI_AS")
                        } else {
                            Value::Null
                        },
                        Value::Bit(n != "sysname"),
                        Value::Bit(false),
                    ]
                })
                .collect()
        }
        "information_schema.tables" => {
            let db = conn.database();
            user_tables(conn)?
                .into_iter()
                .map(|(name, _)| {
                    vec![
                        text(&db),
                        text("dbo"),
                        text(&name),
                        Value::VarChar("BASE TABLE".into()),
                    ]
                })
                .collect()
        }
        "information_schema.columns" => {
            let db = conn.database();
            let tables: Vec<String> = user_tables(conn)?
                .into_iter()
                .map(|(n, _)| n.to_lowercase())
                .collect();
            let mut cols = table_columns(conn)?;
            cols.retain(|c| tables.contains(&c.table.to_lowercase()));
            cols.into_iter()
                .map(|c| {
                    let (chars, octets) = match (&c.ty, c.ty.max_len()) {
                        (t, Some(n)) if t.is_string() || t.is_binary() => {
                            let unit = if t.is_unicode() { 2 } else { 1 };
                            (Value::Int(n as i32), Value::Int((n * unit) as i32))
                        }
                        (t, None) if t.is_string() || t.is_binary() => {
                            (Value::Int(-1), Value::Int(-1))
                        }
                        _ => (Value::Null, Value::Null),
                    };
                    let numeric = c.ty.is_numeric() && !matches!(c.ty, DataType::Bit);
                    let (p, sc) = c.ty.numeric_ps();
                    let (p, sc) = match c.ty {
                        DataType::Float => (53, 0),
                        DataType::Real => (24, 0),
                        _ => (p, sc),
                    };
                    let dtp = match c.ty {
                        DataType::DateTime2(n)
                        | DataType::Time(n)
                        | DataType::DateTimeOffset(n) => Value::SmallInt(n as i16),
                        DataType::DateTime => Value::SmallInt(3),
                        DataType::Date | DataType::SmallDateTime => Value::SmallInt(0),
                        _ => Value::Null,
                    };
                    vec![
                        text(&db),
                        text("dbo"),
                        text(&c.table),
                        text(&c.name),
                        Value::Int(c.ordinal),
                        Value::Null,
                        Value::VarChar(if c.nullable { "YES" } else { "NO" }.into()),
                        text(&c.ty.base_name()),
                        chars,
                        octets,
                        if numeric {
                            Value::TinyInt(p)
                        } else {
                            Value::Null
                        },
                        if numeric {
                            Value::Int(sc as i32)
                        } else {
                            Value::Null
                        },
                        dtp,
                        if c.ty.is_string() {
                            text("SQL_Latin1_General_CP1_CI_AS")
                        } else {
                            Value::Null
                        },
                    ]
                })
                .collect()
        }
        _ => vec![],
    })
}

/// User tables of the current database with their object ids (ordered by name, as OBJECT_ID numbers them).
fn user_tables(conn: &mut Conn) -> Result<Vec<(String, i32)>, SqlError> {
    if conn.database() == "master" {
        return Ok(vec![]);
    }
    let r = conn
        .session
        .query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND name NOT LIKE '\\_\\_milink%' ESCAPE '\\' ORDER BY lower(name)",
            &[],
        )
        .map_err(crate::exec::engine_err_sql)?;
    Ok(r.rows
        .into_iter()
        .enumerate()
        .filter_map(|(i, row)| match &row[0] {
            rusqlite::types::Value::Text(t) => Some((t.clone(), 1_000_000 + i as i32)),
            _ => None,
        })
        .collect())
}

struct ColumnMeta {
    table: String,
    ordinal: i32,
    name: String,
    ty: DataType,
    nullable: bool,
    identity: bool,
}

/// Declared columns from the database's own metadata table.
fn table_columns(conn: &mut Conn) -> Result<Vec<ColumnMeta>, SqlError> {
    if conn.database() == "master" {
        return Ok(vec![]);
    }
    let exists = conn
        .session
        .query(
            "SELECT count(*) FROM sqlite_master WHERE name = '__milink_columns'",
            &[],
        )
        .map_err(crate::exec::engine_err_sql)?;
    if exists.rows.first().and_then(|r| r.first()) != Some(&rusqlite::types::Value::Integer(1)) {
        return Ok(vec![]);
    }
    let r = conn
        .session
        .query(
            "SELECT table_key, ordinal, name, type, is_nullable, is_identity FROM __milink_columns \
             ORDER BY lower(table_key), ordinal",
            &[],
        )
        .map_err(crate::exec::engine_err_sql)?;
    use rusqlite::types::Value as S;
    Ok(r.rows
        .into_iter()
        .filter_map(|row| {
            let (S::Text(t), S::Integer(o), S::Text(n), S::Text(ty)) =
                (&row[0], &row[1], &row[2], &row[3])
            else {
                return None;
            };
            Some(ColumnMeta {
                table: t.clone(),
                ordinal: *o as i32,
                name: n.clone(),
                ty: tsql::parse_data_type(ty).unwrap_or(DataType::NVarChar(Len::Max)),
                nullable: row[4] != S::Integer(0),
                identity: row[5] == S::Integer(1),
            })
        })
        .collect())
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
    // Identifiers keep the user's case (SYS.TABLES, INFORMATION_SCHEMA.COLUMNS); SQLite names are not.
    let lower = sql.to_lowercase();
    for v in views() {
        let quoted = format!("\"{}\"", v.key);
        let hit = if v.schema == "msdb" {
            lower.contains("\"msdb\".") && lower.contains(&quoted)
        } else {
            lower.contains(&quoted)
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
