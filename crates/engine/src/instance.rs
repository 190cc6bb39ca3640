//! The instance: a data directory (locked, versioned), the system catalog (master) and the user databases.
//!
//! Layout of a data directory:
//!   milink.json              format version and instance name
//!   milink.lock              held (flock) while an instance runs
//!   master.db                system catalog: databases, logins, backup history, later certificates/endpoints/AGs
//!   databases/<guid>/        one user database: db.sqlite (+ WAL), control.json, log/*.mlog

use crate::database::{guid_hex, Database, DbOptions, DbState};
use crate::error::{Result, SqlError};
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const DATA_DIR_VERSION: u32 = 1;
/// User database ids start after master, tempdb, model and msdb, as in SQL Server.
pub const FIRST_USER_DB_ID: i32 = 5;

#[derive(Debug, Clone)]
pub struct InstanceConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub db_options: DbOptions,
}

#[derive(Serialize, Deserialize)]
struct DirInfo {
    format_version: u32,
    name: String,
}

enum Entry {
    Open(Arc<Database>),
    /// Recovery failed: kept visible (sys.databases shows SUSPECT), never served.
    Suspect {
        id: i32,
        name: String,
        dir: PathBuf,
        error: SqlError,
    },
}

/// A row of sys.databases as the engine knows it.
#[derive(Debug, Clone)]
pub struct DatabaseInfo {
    pub database_id: i32,
    pub name: String,
    pub state_desc: &'static str,
    pub recovery_model_desc: &'static str,
    pub log_reuse_wait_desc: &'static str,
    pub create_date: String,
}

pub struct Instance {
    pub name: String,
    dir: PathBuf,
    _lock: File,
    master: Mutex<Connection>,
    dbs: RwLock<HashMap<String, Entry>>,
    opts: DbOptions,
    /// Serialises CREATE/DROP/RESTORE of databases.
    ddl: Mutex<()>,
}

fn key(name: &str) -> String {
    name.to_lowercase()
}

impl Instance {
    pub fn open(cfg: InstanceConfig) -> Result<Arc<Instance>> {
        let dir = cfg.data_dir.clone();
        fs::create_dir_all(&dir).map_err(|e| {
            SqlError::io(format!("cannot create data directory {}", dir.display()), e)
        })?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("milink.lock"))?;
        if lock.try_lock().is_err() {
            let pid = fs::read_to_string(dir.join("milink.lock")).unwrap_or_default();
            return Err(SqlError::new(
                5120,
                16,
                format!(
                    "The data directory {} is in use by another milink process{}.",
                    dir.display(),
                    if pid.trim().is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {})", pid.trim())
                    }
                ),
            ));
        }
        {
            let mut l = &lock;
            lock.set_len(0)?;
            write!(l, "{}", std::process::id())?;
        }
        let info_path = dir.join("milink.json");
        let name = if info_path.exists() {
            let info: DirInfo = serde_json::from_slice(&fs::read(&info_path)?).map_err(|e| {
                SqlError::new(
                    5120,
                    16,
                    format!(
                        "{} is not a milink data directory file: {e}",
                        info_path.display()
                    ),
                )
            })?;
            if info.format_version != DATA_DIR_VERSION {
                return Err(SqlError::new(
                    5120,
                    16,
                    format!(
                        "The data directory {} was written by an incompatible milink version (data format {}; this build uses {}).",
                        dir.display(),
                        info.format_version,
                        DATA_DIR_VERSION
                    ),
                ));
            }
            if info.name != cfg.name {
                tracing::warn!(was = %info.name, now = %cfg.name, "instance name differs from the one recorded in the data directory");
            }
            cfg.name.clone()
        } else {
            let tmp = dir.join("milink.json.tmp");
            fs::write(
                &tmp,
                serde_json::to_vec_pretty(&DirInfo {
                    format_version: DATA_DIR_VERSION,
                    name: cfg.name.clone(),
                })
                .unwrap_or_default(),
            )?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &info_path)?;
            cfg.name.clone()
        };
        fs::create_dir_all(dir.join("databases"))?;
        let master = Connection::open(dir.join("master.db"))?;
        master.pragma_update(None, "journal_mode", "WAL")?;
        master.pragma_update(None, "synchronous", "FULL")?;
        master.execute_batch(MASTER_SCHEMA)?;
        let inst = Arc::new(Instance {
            name,
            dir: dir.clone(),
            _lock: lock,
            master: Mutex::new(master),
            dbs: RwLock::new(HashMap::new()),
            opts: cfg.db_options.clone(),
            ddl: Mutex::new(()),
        });
        let rows: Vec<(i32, String, String)> = {
            let m = inst.master.lock();
            let mut st =
                m.prepare("SELECT database_id, name, dir FROM databases ORDER BY database_id")?;
            let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            it.collect::<rusqlite::Result<_>>()?
        };
        for (id, name, sub) in rows {
            let ddir = dir.join("databases").join(&sub);
            let entry = match Database::open(&ddir, id, inst.opts.clone()) {
                Ok(db) => Entry::Open(db),
                Err(error) => {
                    tracing::error!(db = %name, %error, "database recovery failed; marked SUSPECT");
                    Entry::Suspect {
                        id,
                        name: name.clone(),
                        dir: ddir,
                        error,
                    }
                }
            };
            inst.dbs.write().insert(key(&name), entry);
        }
        Ok(inst)
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn master(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.master.lock()
    }

    pub fn db_options(&self) -> &DbOptions {
        &self.opts
    }

    /// CREATE DATABASE.
    pub fn create_database(&self, name: &str) -> Result<Arc<Database>> {
        let _g = self.ddl.lock();
        self.check_new_name(name)?;
        let id = self.next_db_id()?;
        let guid = crate::database::new_guid();
        let sub = guid_hex(&guid);
        let ddir = self.dir.join("databases").join(&sub);
        let db = Database::create(&ddir, name, id, self.opts.clone())?;
        self.register(id, name, &sub)?;
        self.dbs.write().insert(key(name), Entry::Open(db.clone()));
        Ok(db)
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.len() > 128 {
            return Err(SqlError::new(
                1038,
                15,
                "An object or column name is missing or empty.",
            ));
        }
        if ["master", "tempdb", "model", "msdb"].contains(&key(name).as_str())
            || self.dbs.read().contains_key(&key(name))
        {
            return Err(SqlError::new(
                1801,
                16,
                format!("Database '{name}' already exists. Choose a different database name."),
            ));
        }
        Ok(())
    }

    fn next_db_id(&self) -> Result<i32> {
        let m = self.master.lock();
        let max: Option<i32> =
            m.query_row("SELECT max(database_id) FROM databases", [], |r| r.get(0))?;
        Ok(max
            .map(|x| x + 1)
            .unwrap_or(FIRST_USER_DB_ID)
            .max(FIRST_USER_DB_ID))
    }

    fn register(&self, id: i32, name: &str, sub: &str) -> Result<()> {
        self.master.lock().execute(
            "INSERT INTO databases(database_id, name, dir, create_date) VALUES (?1, ?2, ?3, strftime('%Y-%m-%d %H:%M:%f','now'))",
            params![id, name, sub],
        )?;
        Ok(())
    }

    /// Bring a database directory prepared elsewhere (restore, seeding) under this instance's management,
    /// replacing an existing database of that name when `replace` is set.
    pub fn attach_prepared(
        &self,
        name: &str,
        prepared_dir: &Path,
        replace: bool,
    ) -> Result<Arc<Database>> {
        let _g = self.ddl.lock();
        let old = self.dbs.read().contains_key(&key(name));
        let id = if old {
            if !replace {
                return Err(SqlError::new(
                    1801,
                    16,
                    format!("Database '{name}' already exists. Choose a different database name."),
                ));
            }
            self.drop_locked(name)?
        } else {
            self.check_new_name(name)?;
            self.next_db_id()?
        };
        let sub = prepared_dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let ddir = self.dir.join("databases").join(&sub);
        if prepared_dir != ddir {
            fs::rename(prepared_dir, &ddir)?;
        }
        let db = Database::open(&ddir, id, self.opts.clone())?;
        self.register(id, name, &sub)?;
        self.dbs.write().insert(key(name), Entry::Open(db.clone()));
        Ok(db)
    }

    /// Begin (or resume) seeding a secondary copy of another instance's database: an empty, RESTORING,
    /// read-only database whose log continues the source's after `start_lsn`. Resuming returns the existing copy.
    pub fn seed_target(
        &self,
        name: &str,
        guid: [u8; 16],
        page_size: u32,
        epoch: u64,
        start_lsn: u64,
    ) -> Result<Arc<Database>> {
        if let Ok(db) = self.database_any_state(name) {
            let c = db.control();
            let same_copy = db.guid == guid && c.role == crate::database::Role::Secondary;
            if same_copy && db.log().first_lsn() == start_lsn + 1 {
                return Ok(db);
            }
            if same_copy && c.consistent_at.is_some() {
                // An interrupted copy of an older seeding: the source started over, so must we.
                drop(db);
                self.drop_database(name)?;
                return self.seed_target(name, guid, page_size, epoch, start_lsn);
            }
            return Err(SqlError::new(
                1801,
                16,
                format!("Database '{name}' already exists on this instance and is not a copy of the database being seeded."),
            ));
        }
        let dir = self.staging_dir()?;
        let res = (|| {
            File::create(dir.join("db.sqlite"))?.sync_all()?;
            crate::log::Log::create(
                &dir.join("log"),
                name,
                page_size,
                guid,
                start_lsn + 1,
                0,
                self.opts.log.clone(),
            )?
            .shutdown();
            let control = crate::database::Control {
                format_version: crate::database::CONTROL_VERSION,
                name: name.to_string(),
                guid: guid_hex(&guid),
                page_size,
                epoch,
                checkpoint_lsn: start_lsn,
                recovery_model: crate::RecoveryModel::Full,
                database_backup_lsn: 0,
                backup_chain: false,
                last_log_backup_lsn: 0,
                max_log_bytes: 0,
                state: DbState::Restoring,
                role: crate::database::Role::Secondary,
                consistent_at: Some(u64::MAX),
                seed_next_page: 1,
                log_holds: Default::default(),
                history: vec![(epoch, start_lsn + 1)],
            };
            crate::database::write_control(&dir, &control)
        })();
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.attach_prepared(name, &dir, false)
    }

    /// A fresh, empty directory for a database being prepared (restore, seeding) before it is attached.
    pub fn staging_dir(&self) -> Result<PathBuf> {
        let guid = crate::database::new_guid();
        let d = self.dir.join("databases").join(guid_hex(&guid));
        fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// DROP DATABASE.
    pub fn drop_database(&self, name: &str) -> Result<()> {
        let _g = self.ddl.lock();
        self.drop_locked(name).map(|_| ())
    }

    fn drop_locked(&self, name: &str) -> Result<i32> {
        let entry = self.dbs.write().remove(&key(name));
        let (id, dir) = match entry {
            None => {
                return Err(SqlError::new(
                    3701,
                    11,
                    format!("Cannot drop the database '{name}', because it does not exist or you do not have permission."),
                ))
            }
            Some(Entry::Open(db)) => {
                db.log().shutdown();
                (db.id, db.dir().to_path_buf())
            }
            Some(Entry::Suspect { id, dir, .. }) => (id, dir),
        };
        self.master
            .lock()
            .execute("DELETE FROM databases WHERE database_id = ?1", [id])?;
        fs::remove_dir_all(&dir)?;
        Ok(id)
    }

    /// An online database, or SQL Server's error for why not.
    pub fn database(&self, name: &str) -> Result<Arc<Database>> {
        match self.dbs.read().get(&key(name)) {
            Some(Entry::Open(db)) => match db.control().state {
                DbState::Online => Ok(db.clone()),
                DbState::Restoring => Err(SqlError::new(
                    927,
                    14,
                    format!(
                        "Database '{}' cannot be opened. It is in the middle of a restore.",
                        db.name
                    ),
                )),
                DbState::Suspect => Err(suspect_error(&db.name)),
            },
            Some(Entry::Suspect { name, .. }) => Err(suspect_error(name)),
            None => Err(SqlError::no_database(name)),
        }
    }

    /// Any open database whatever its state (RESTORE LOG needs the RESTORING ones).
    pub fn database_any_state(&self, name: &str) -> Result<Arc<Database>> {
        match self.dbs.read().get(&key(name)) {
            Some(Entry::Open(db)) => Ok(db.clone()),
            Some(Entry::Suspect { name, .. }) => Err(suspect_error(name)),
            None => Err(SqlError::no_database(name)),
        }
    }

    /// Why a database is SUSPECT (the error recovery raised).
    pub fn suspect_reason(&self, name: &str) -> Option<SqlError> {
        match self.dbs.read().get(&key(name)) {
            Some(Entry::Suspect { error, .. }) => Some(error.clone()),
            _ => None,
        }
    }

    /// sys.databases, user databases only (the SQL layer adds the system ones).
    pub fn databases(&self) -> Vec<DatabaseInfo> {
        let created: HashMap<i32, String> = {
            let m = self.master.lock();
            let mut st = match m.prepare("SELECT database_id, create_date FROM databases") {
                Ok(s) => s,
                Err(_) => return Vec::new(),
            };
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map(|it| it.filter_map(|x| x.ok()).collect())
                .unwrap_or_default()
        };
        let mut out: Vec<DatabaseInfo> = self
            .dbs
            .read()
            .values()
            .map(|e| match e {
                Entry::Open(db) => {
                    let c = db.control();
                    DatabaseInfo {
                        database_id: db.id,
                        name: db.name.clone(),
                        state_desc: c.state.desc(),
                        recovery_model_desc: c.recovery_model.desc(),
                        log_reuse_wait_desc: db.log_reuse().reason,
                        create_date: created.get(&db.id).cloned().unwrap_or_default(),
                    }
                }
                Entry::Suspect { id, name, .. } => DatabaseInfo {
                    database_id: *id,
                    name: name.clone(),
                    state_desc: "SUSPECT",
                    recovery_model_desc: "FULL",
                    log_reuse_wait_desc: "NOTHING",
                    create_date: created.get(id).cloned().unwrap_or_default(),
                },
            })
            .collect();
        out.sort_by_key(|d| d.database_id);
        out
    }

    pub fn open_databases(&self) -> Vec<Arc<Database>> {
        let mut v: Vec<_> = self
            .dbs
            .read()
            .values()
            .filter_map(|e| match e {
                Entry::Open(db) => Some(db.clone()),
                _ => None,
            })
            .collect();
        v.sort_by_key(|d| d.id);
        v
    }

    pub fn database_id(&self, name: &str) -> Option<i32> {
        match self.dbs.read().get(&key(name))? {
            Entry::Open(db) => Some(db.id),
            Entry::Suspect { id, .. } => Some(*id),
        }
    }

    /// Clean shutdown: every database flushed and checkpointed.
    pub fn shutdown(&self) -> Result<()> {
        for db in self.open_databases() {
            if let Err(e) = db.close() {
                tracing::error!(db = %db.name, error = %e, "close failed");
            }
        }
        Ok(())
    }

    /// Record a backup in msdb.dbo.backupset.
    pub fn record_backup(&self, b: &crate::backup::BackupSetRow) -> Result<()> {
        self.master.lock().execute(
            "INSERT INTO backupset(database_name, type, name, first_lsn, last_lsn, database_backup_lsn, checkpoint_lsn, \
             is_copy_only, backup_start_date, backup_finish_date, backup_size, compressed_backup_size, physical_device_name) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
            params![
                b.database_name,
                b.backup_type,
                b.name,
                b.first_lsn as i64,
                b.last_lsn as i64,
                b.database_backup_lsn as i64,
                b.checkpoint_lsn as i64,
                b.is_copy_only,
                b.backup_start_date,
                b.backup_finish_date,
                b.backup_size as i64,
                b.compressed_backup_size as i64,
                b.physical_device_name
            ],
        )?;
        Ok(())
    }

    pub fn backup_history(&self, database: &str) -> Result<Vec<crate::backup::BackupSetRow>> {
        let m = self.master.lock();
        let mut st = m.prepare(
            "SELECT database_name, type, name, first_lsn, last_lsn, database_backup_lsn, checkpoint_lsn, is_copy_only, \
             backup_start_date, backup_finish_date, backup_size, compressed_backup_size, physical_device_name \
             FROM backupset WHERE database_name = ?1 COLLATE NOCASE ORDER BY backup_set_id",
        )?;
        let rows = st.query_map([database], |r| {
            Ok(crate::backup::BackupSetRow {
                database_name: r.get(0)?,
                backup_type: r.get(1)?,
                name: r.get(2)?,
                first_lsn: r.get::<_, i64>(3)? as u64,
                last_lsn: r.get::<_, i64>(4)? as u64,
                database_backup_lsn: r.get::<_, i64>(5)? as u64,
                checkpoint_lsn: r.get::<_, i64>(6)? as u64,
                is_copy_only: r.get(7)?,
                backup_start_date: r.get(8)?,
                backup_finish_date: r.get(9)?,
                backup_size: r.get::<_, i64>(10)? as u64,
                compressed_backup_size: r.get::<_, i64>(11)? as u64,
                physical_device_name: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A key/value setting in master (instance-level state such as the sa password hash).
    pub fn setting(&self, k: &str) -> Result<Option<String>> {
        Ok(self
            .master
            .lock()
            .query_row("SELECT value FROM settings WHERE key = ?1", [k], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_setting(&self, k: &str, v: &str) -> Result<()> {
        self.master.lock().execute(
            "INSERT OR REPLACE INTO settings(key, value) VALUES (?1, ?2)",
            [k, v],
        )?;
        Ok(())
    }
}

fn suspect_error(name: &str) -> SqlError {
    SqlError::new(
        926,
        14,
        format!("Database '{name}' cannot be opened. It has been marked SUSPECT by recovery."),
    )
}

const MASTER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS databases(
    database_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    dir TEXT NOT NULL,
    create_date TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS backupset(
    backup_set_id INTEGER PRIMARY KEY,
    database_name TEXT NOT NULL,
    type TEXT NOT NULL,
    name TEXT,
    first_lsn INTEGER, last_lsn INTEGER, database_backup_lsn INTEGER, checkpoint_lsn INTEGER,
    is_copy_only INTEGER NOT NULL DEFAULT 0,
    backup_start_date TEXT, backup_finish_date TEXT,
    backup_size INTEGER, compressed_backup_size INTEGER,
    physical_device_name TEXT);
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT);
";
