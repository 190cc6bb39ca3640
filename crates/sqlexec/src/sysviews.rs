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
        // milink's proof of byte identity: equal checksums at equal LSNs on both replicas.
        View {
            key: "sys.dm_db_replica_checksum",
            schema: "temp",
            cols: vec![
                ("database_id", Int),
                ("database_name", SysName),
                ("lsn", nv(24)),
                ("page_count", Int),
                ("checksum", nv(64)),
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
            key: "sys.schemas",
            schema: "temp",
            cols: vec![
                ("name", sysname()),
                ("schema_id", Int),
                ("principal_id", Int),
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
                ("transaction_isolation_level", SmallInt),
            ],
        },
        View {
            key: "INFORMATION_SCHEMA.TABLES",
            schema: "temp",
            cols: vec![
                ("TABLE_CATALOG", nv(128)),
                ("TABLE_SCHEMA", nv(128)),
                ("TABLE_NAME", sysname()),
                ("TABLE_TYPE", DataType::VarChar(Len::N(10))),
            ],
        },
        View {
            key: "INFORMATION_SCHEMA.COLUMNS",
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
                ("NUMERIC_PRECISION", TinyInt),
                ("NUMERIC_SCALE", Int),
            ],
        },
        View {
            key: "sys.certificates",
            schema: "temp",
            cols: vec![
                ("name", sysname()),
                ("certificate_id", Int),
                ("principal_id", Int),
                ("pvt_key_encryption_type", DataType::Char(2)),
                ("pvt_key_encryption_type_desc", nv(60)),
                ("is_active_for_begin_dialog", Bit),
                ("issuer_name", nv(442)),
                ("cert_serial_number", nv(64)),
                ("sid", DataType::VarBinary(Len::N(85))),
                ("string_sid", nv(128)),
                ("subject", nv(4000)),
                ("expiry_date", DateTime),
                ("start_date", DateTime),
                ("thumbprint", DataType::VarBinary(Len::N(32))),
                ("attested_by", nv(260)),
                ("pvt_key_last_backup_date", DateTime),
                ("key_length", Int),
            ],
        },
        View {
            key: "sys.symmetric_keys",
            schema: "temp",
            cols: vec![
                ("name", sysname()),
                ("principal_id", Int),
                ("symmetric_key_id", Int),
                ("key_length", Int),
                ("key_algorithm", DataType::Char(2)),
                ("algorithm_desc", nv(60)),
                ("create_date", DateTime),
                ("modify_date", DateTime),
                ("key_guid", UniqueIdentifier),
            ],
        },
        View {
            key: "sys.availability_groups",
            schema: "temp",
            cols: vec![
                ("group_id", UniqueIdentifier),
                ("name", sysname()),
                ("failure_condition_level", Int),
                ("health_check_timeout", Int),
                ("automated_backup_preference", TinyInt),
                ("automated_backup_preference_desc", nv(60)),
                ("version", Int),
                ("basic_features", Bit),
                ("dtc_support", Bit),
                ("is_distributed", Bit),
                ("cluster_type", TinyInt),
                ("cluster_type_desc", nv(60)),
                ("required_synchronized_secondaries_to_commit", Int),
                ("sequence_number", BigInt),
                ("is_contained", Bit),
            ],
        },
        View {
            key: "sys.availability_replicas",
            schema: "temp",
            cols: vec![
                ("replica_id", UniqueIdentifier),
                ("group_id", UniqueIdentifier),
                ("replica_metadata_id", Int),
                ("replica_server_name", nv(256)),
                ("endpoint_url", nv(128)),
                ("availability_mode", TinyInt),
                ("availability_mode_desc", nv(60)),
                ("failover_mode", TinyInt),
                ("failover_mode_desc", nv(60)),
                ("session_timeout", Int),
                ("primary_role_allow_connections", TinyInt),
                ("primary_role_allow_connections_desc", nv(60)),
                ("secondary_role_allow_connections", TinyInt),
                ("secondary_role_allow_connections_desc", nv(60)),
                ("create_date", DateTime),
                ("modify_date", DateTime),
                ("backup_priority", Int),
                ("seeding_mode", TinyInt),
                ("seeding_mode_desc", nv(60)),
            ],
        },
        View {
            key: "sys.dm_hadr_availability_replica_states",
            schema: "temp",
            cols: vec![
                ("replica_id", UniqueIdentifier),
                ("group_id", UniqueIdentifier),
                ("is_local", Bit),
                ("role", TinyInt),
                ("role_desc", nv(60)),
                ("operational_state", TinyInt),
                ("operational_state_desc", nv(60)),
                ("connected_state", TinyInt),
                ("connected_state_desc", nv(60)),
                ("recovery_health_desc", nv(60)),
                ("synchronization_health", TinyInt),
                ("synchronization_health_desc", nv(60)),
                ("last_connect_error_number", Int),
                ("last_connect_error_description", nv(1024)),
                ("last_connect_error_timestamp", DateTime),
            ],
        },
        View {
            key: "sys.dm_hadr_database_replica_states",
            schema: "temp",
            cols: vec![
                ("database_id", Int),
                ("group_id", UniqueIdentifier),
                ("replica_id", UniqueIdentifier),
                ("is_local", Bit),
                ("is_primary_replica", Bit),
                ("synchronization_state_desc", nv(60)),
                ("synchronization_health_desc", nv(60)),
                ("database_state_desc", nv(60)),
                ("is_suspended", Bit),
                ("last_sent_lsn", lsn_type()),
                ("last_hardened_lsn", lsn_type()),
                ("last_redone_lsn", lsn_type()),
                ("end_of_log_lsn", lsn_type()),
                ("last_commit_lsn", lsn_type()),
                ("log_send_queue_size", BigInt),
                ("redo_queue_size", BigInt),
                ("secondary_lag_seconds", BigInt),
            ],
        },
        View {
            key: "sys.dm_hadr_automatic_seeding",
            schema: "temp",
            cols: vec![
                ("start_time", DateTime),
                ("completion_time", DateTime),
                ("database_id", Int),
                ("database_name", nv(128)),
                ("is_source", Bit),
                ("current_state", nv(32)),
                ("performed_seeding", Bit),
                ("failure_state", Int),
                ("failure_state_desc", nv(32)),
                ("error_code", Int),
                ("number_of_attempts", Int),
                ("transferred_size_bytes", BigInt),
            ],
        },
        View {
            key: "sys.dm_hadr_physical_seeding_stats",
            schema: "temp",
            cols: vec![
                ("local_database_name", nv(128)),
                ("role_desc", nv(60)),
                ("internal_state_desc", nv(60)),
                ("transfer_rate_bytes_per_second", BigInt),
                ("transferred_size_bytes", BigInt),
                ("database_size_bytes", BigInt),
                ("start_time_utc", DateTime),
                ("estimate_time_complete_utc", DateTime),
                ("is_compression_enabled", Bit),
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

/// Every system view: the list above plus the endpoint views (crate::endpoints).
fn all_views() -> Vec<View> {
    let mut v = views();
    v.extend(
        crate::endpoints::views()
            .into_iter()
            .map(|(key, cols)| View {
                key,
                schema: "temp",
                cols,
            }),
    );
    v
}

/// Declared column types of every system view, for the translator.
pub fn catalog() -> Vec<(&'static str, Vec<(String, DataType)>)> {
    all_views()
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
        "sys.dm_db_replica_checksum" => inst
            .open_databases()
            .into_iter()
            .filter(|d| d.control().consistent_at.is_none())
            .filter_map(|d| {
                let (lsn, pages, sum) = hadr::identity::page_checksum(&d).ok()?;
                Some(vec![
                    Value::Int(d.id),
                    text(&d.name),
                    text(&engine::lsn_numeric(lsn)),
                    Value::Int(pages as i32),
                    text(&sum),
                ])
            })
            .collect(),
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
        "sys.tables" => user_objects(conn, "sys.objects")?
            .into_iter()
            .filter(|o| matches!(&o[6], Value::NVarChar(d) if d == "USER_TABLE"))
            .map(|o| {
                vec![
                    o[0].clone(),
                    o[1].clone(),
                    o[3].clone(),
                    o[5].clone(),
                    o[6].clone(),
                    Value::Null,
                ]
            })
            .collect(),
        "sys.objects"
        | "sys.columns"
        | "INFORMATION_SCHEMA.TABLES"
        | "INFORMATION_SCHEMA.COLUMNS" => user_objects(conn, key)?,
        "sys.schemas" => [
            ("dbo", 1),
            ("guest", 2),
            ("INFORMATION_SCHEMA", 3),
            ("sys", 4),
        ]
        .iter()
        .map(|(n, id)| {
            vec![
                text(n),
                Value::Int(*id),
                Value::Int(if *id == 1 { 1 } else { *id }),
            ]
        })
        .collect(),
        "sys.types" => SYSTEM_TYPES
            .iter()
            .map(|(n, id, len, p, sc)| {
                let coll = if n.contains("char") || *n == "text" || *n == "ntext" || *n == "sysname"
                {
                    text("SQL_Latin1_General_CP1_CI_AS")
                } else {
                    Value::Null
                };
                vec![
                    text(n),
                    Value::TinyInt(*id),
                    Value::Int(if *n == "sysname" { 256 } else { *id as i32 }),
                    Value::Int(4),
                    Value::SmallInt(*len),
                    Value::TinyInt(*p),
                    Value::TinyInt(*sc),
                    coll,
                    Value::Bit(*n != "sysname"),
                    Value::Bit(false),
                ]
            })
            .collect(),
        "sys.dm_exec_sessions" => {
            let mut v: Vec<(i32, crate::exec::SessionInfo)> = conn
                .server
                .sessions
                .lock()
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            v.sort_by_key(|x| x.0);
            v.into_iter()
                .map(|(spid, s)| {
                    let db = s.shared.lock().database.clone();
                    let dbid = match db.to_lowercase().as_str() {
                        "master" => 1,
                        _ => inst.database_id(&db).unwrap_or(1),
                    };
                    vec![
                        Value::SmallInt(spid as i16),
                        Value::DateTime(s.login_time),
                        text(&conn.server.host),
                        text(""),
                        text(&s.login),
                        text(if spid == conn.shared.lock().spid {
                            "running"
                        } else {
                            "sleeping"
                        }),
                        Value::SmallInt(dbid as i16),
                        Value::Bit(true),
                        Value::SmallInt(2),
                    ]
                })
                .collect()
        }
        "sys.certificates" => {
            let server = conn.server.clone();
            let t = server.trust()?;
            let rows = t
                .certificates(&server.inst.master())
                .map_err(crate::trustsql::err)?;
            rows.into_iter()
                .map(|c| {
                    vec![
                        text(&c.name),
                        Value::Int(c.certificate_id),
                        Value::Int(c.principal_id),
                        Value::VarChar(c.pvt_key_encryption_type.clone()),
                        text(&c.pvt_key_encryption_type_desc),
                        Value::Bit(c.is_active_for_begin_dialog),
                        text(&c.issuer_name),
                        text(&c.cert_serial_number),
                        Value::Binary(c.sid.clone()),
                        text(&c.string_sid),
                        text(&c.subject),
                        Value::DateTime(c.expiry_date),
                        Value::DateTime(c.start_date),
                        Value::Binary(c.thumbprint.clone()),
                        c.attested_by.as_deref().map(text).unwrap_or(Value::Null),
                        c.pvt_key_last_backup_date
                            .map(Value::DateTime)
                            .unwrap_or(Value::Null),
                        Value::Int(c.key_length),
                    ]
                })
                .collect()
        }
        "sys.symmetric_keys" => {
            let server = conn.server.clone();
            let t = server.trust()?;
            let keys = t
                .symmetric_keys(&server.inst.master())
                .map_err(crate::trustsql::err)?;
            keys.into_iter()
                .map(|k| {
                    let guid = tsql::value::convert(
                        &Value::VarChar(k.key_guid.clone()),
                        &DataType::UniqueIdentifier,
                        None,
                    )
                    .unwrap_or(Value::Null);
                    vec![
                        text(&k.name),
                        Value::Int(k.principal_id),
                        Value::Int(k.symmetric_key_id),
                        Value::Int(k.key_length),
                        Value::VarChar(k.key_algorithm.clone()),
                        text(&k.algorithm_desc),
                        Value::DateTime(k.create_date),
                        Value::DateTime(k.modify_date),
                        guid,
                    ]
                })
                .collect()
        }
        "sys.availability_groups"
        | "sys.availability_replicas"
        | "sys.dm_hadr_availability_replica_states"
        | "sys.dm_hadr_database_replica_states"
        | "sys.dm_hadr_physical_seeding_stats"
        | "sys.dm_hadr_automatic_seeding" => crate::ags::rows(&conn.server.clone(), key)?,
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

/// (name, system_type_id, max_length, precision, scale) as SQL Server's sys.types lists them.
const SYSTEM_TYPES: &[(&str, u8, i16, u8, u8)] = &[
    ("image", 34, 16, 0, 0),
    ("text", 35, 16, 0, 0),
    ("uniqueidentifier", 36, 16, 0, 0),
    ("date", 40, 3, 10, 0),
    ("time", 41, 5, 16, 7),
    ("datetime2", 42, 8, 27, 7),
    ("datetimeoffset", 43, 10, 34, 7),
    ("tinyint", 48, 1, 3, 0),
    ("smallint", 52, 2, 5, 0),
    ("int", 56, 4, 10, 0),
    ("smalldatetime", 58, 4, 16, 0),
    ("real", 59, 4, 24, 0),
    ("money", 60, 8, 19, 4),
    ("datetime", 61, 8, 23, 3),
    ("float", 62, 8, 53, 0),
    ("sql_variant", 98, 8016, 0, 0),
    ("ntext", 99, 16, 0, 0),
    ("bit", 104, 1, 1, 0),
    ("decimal", 106, 17, 38, 38),
    ("numeric", 108, 17, 38, 38),
    ("smallmoney", 122, 4, 10, 4),
    ("bigint", 127, 8, 19, 0),
    ("varbinary", 165, 8000, 0, 0),
    ("varchar", 167, 8000, 0, 0),
    ("binary", 173, 8000, 0, 0),
    ("char", 175, 8000, 0, 0),
    ("nvarchar", 231, 8000, 0, 0),
    ("nchar", 239, 8000, 0, 0),
    ("xml", 241, -1, 0, 0),
    ("sysname", 231, 256, 0, 0),
];

/// A column's type as sys.columns / INFORMATION_SCHEMA show it: (type name, system_type_id, max_length in bytes
/// (-1 = MAX), precision, scale, character length).
fn type_facts(t: &DataType) -> (String, u8, i16, u8, u8, Option<i32>) {
    let name = match t {
        DataType::SysName => "nvarchar".to_string(),
        DataType::Decimal { numeric: true, .. } => "numeric".to_string(),
        _ => t.base_name().to_lowercase(),
    };
    let base = SYSTEM_TYPES
        .iter()
        .find(|x| x.0 == name)
        .copied()
        .unwrap_or(("", 231, -1, 0, 0));
    let chars = |l: &Len, unicode: bool| match l {
        Len::Max => (-1i16, Some(-1)),
        Len::N(n) => ((*n * if unicode { 2 } else { 1 }) as i16, Some(*n as i32)),
    };
    let (len, p, sc, clen) = match t {
        DataType::VarChar(l) | DataType::VarBinary(l) => {
            let (b, c) = chars(l, false);
            (b, 0, 0, c)
        }
        DataType::NVarChar(l) => {
            let (b, c) = chars(l, true);
            (b, 0, 0, c)
        }
        DataType::SysName => (256, 0, 0, Some(128)),
        DataType::Char(n) | DataType::Binary(n) => (*n as i16, 0, 0, Some(*n as i32)),
        DataType::NChar(n) => ((*n * 2) as i16, 0, 0, Some(*n as i32)),
        DataType::Decimal {
            precision, scale, ..
        } => (
            if *precision <= 9 {
                5
            } else if *precision <= 19 {
                9
            } else if *precision <= 28 {
                13
            } else {
                17
            },
            *precision,
            *scale,
            None,
        ),
        DataType::Time(s) | DataType::DateTime2(s) | DataType::DateTimeOffset(s) => {
            (base.2, base.3, *s, None)
        }
        _ => (base.2, base.3, base.4, None),
    };
    (name, base.1, len, p, sc, clen)
}

/// A stable object id per table name (SQL Server's ids are arbitrary but stable).
pub fn object_id(key: &str) -> i32 {
    (crc32fast::hash(key.to_lowercase().as_bytes()) % 1_000_000_000) as i32 + 1_000_000
}

fn user_objects(conn: &mut Conn, key: &str) -> Result<Vec<Vec<Value>>, SqlError> {
    let db = conn.database();
    if db == "master" {
        return Ok(vec![]);
    }
    let tables = conn
        .session
        .query(
            "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_\\_milink%' ESCAPE '\\' ORDER BY name",
            &[],
        )
        .map_err(crate::exec::engine_err_sql)?;
    let has_meta = conn
        .session
        .query(
            "SELECT count(*) FROM sqlite_master WHERE name = '__milink_columns'",
            &[],
        )
        .map_err(crate::exec::engine_err_sql)?;
    let cols = if has_meta.rows.first().and_then(|r| r.first())
        == Some(&rusqlite::types::Value::Integer(1))
    {
        conn.session
            .query("SELECT table_key, name, type, is_nullable, is_identity, ordinal FROM __milink_columns ORDER BY table_key, ordinal", &[])
            .map_err(crate::exec::engine_err_sql)?
            .rows
    } else {
        vec![]
    };
    let s = |v: &rusqlite::types::Value| match v {
        rusqlite::types::Value::Text(t) => t.clone(),
        _ => String::new(),
    };
    let split = |k: &str| match k.split_once('.') {
        Some((sch, n)) => (sch.to_string(), n.to_string()),
        None => ("dbo".to_string(), k.to_string()),
    };
    let mut out = Vec::new();
    match key {
        "sys.objects" | "INFORMATION_SCHEMA.TABLES" => {
            for t in &tables.rows {
                let k = s(&t[0]);
                let view = s(&t[1]) == "view";
                let (sch, name) = split(&k);
                if key == "sys.objects" {
                    out.push(vec![
                        text(&name),
                        Value::Int(object_id(&k)),
                        Value::Null,
                        Value::Int(if sch == "dbo" { 1 } else { 5 }),
                        Value::Int(0),
                        Value::VarChar(if view { "V ".into() } else { "U ".into() }),
                        text(if view { "VIEW" } else { "USER_TABLE" }),
                        Value::Null,
                        Value::Null,
                        Value::Bit(false),
                    ]);
                } else {
                    out.push(vec![
                        text(&db),
                        text(&sch),
                        text(&name),
                        Value::VarChar(if view {
                            "VIEW".into()
                        } else {
                            "BASE TABLE".into()
                        }),
                    ]);
                }
            }
        }
        _ => {
            for c in &cols {
                let k = s(&c[0]);
                let (sch, table) = split(&k);
                let ty = tsql::parse_data_type(&s(&c[2])).unwrap_or(DataType::NVarChar(Len::Max));
                let (tname, tid, len, p, sc, clen) = type_facts(&ty);
                let nullable = c[3] == rusqlite::types::Value::Integer(1);
                let ordinal = match c[5] {
                    rusqlite::types::Value::Integer(i) => i as i32,
                    _ => 0,
                };
                let string = ty.is_string();
                if key == "sys.columns" {
                    out.push(vec![
                        Value::Int(object_id(&k)),
                        text(&s(&c[1])),
                        Value::Int(ordinal),
                        Value::TinyInt(tid),
                        Value::Int(tid as i32),
                        Value::SmallInt(len),
                        Value::TinyInt(p),
                        Value::TinyInt(sc),
                        if string {
                            text("SQL_Latin1_General_CP1_CI_AS")
                        } else {
                            Value::Null
                        },
                        Value::Bit(nullable),
                        Value::Bit(c[4] == rusqlite::types::Value::Integer(1)),
                    ]);
                } else {
                    out.push(vec![
                        text(&db),
                        text(&sch),
                        text(&table),
                        text(&s(&c[1])),
                        Value::Int(ordinal),
                        Value::Null,
                        Value::VarChar(if nullable { "YES".into() } else { "NO".into() }),
                        text(&tname),
                        clen.map(Value::Int).unwrap_or(Value::Null),
                        if ty.is_numeric() {
                            Value::TinyInt(p)
                        } else {
                            Value::Null
                        },
                        if ty.is_numeric() {
                            Value::Int(sc as i32)
                        } else {
                            Value::Null
                        },
                    ]);
                }
            }
        }
    }
    Ok(out)
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
    // Names are case-insensitive: sys.Databases and INFORMATION_SCHEMA.tables are the same views.
    let sql = sql.to_lowercase();
    for v in all_views() {
        let quoted = format!("\"{}\"", v.key.to_lowercase());
        let hit = if v.schema == "msdb" {
            sql.contains("\"msdb\".") && sql.contains(&quoted)
        } else {
            sql.contains(&quoted)
        };
        if !hit {
            continue;
        }
        let rows = match crate::endpoints::rows_for(conn, v.key) {
            Some(r) => r?,
            None => rows_for(conn, v.key)?,
        };
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
