//! One user database: its SQLite file, its log, its single writer, its durable reader snapshot, its checkpoints
//! and log space.
//!
//! Where a commit becomes a log block: [`DbConn::commit`] — SQLite commits into its WAL (no fsync, synchronous =
//! NORMAL), the engine captures the frames from the -wal file while it still holds the writer ([`WalCapture`]),
//! queues the block on the [`Log`] (group commit), releases the writer, and waits for the block's fsync before
//! acknowledging. Readers only ever start on the snapshot published when a block became durable.

use crate::apply;
use crate::collation;
use crate::error::{Result, SqlError};
use crate::fault;
use crate::log::format::Block;
use crate::log::{sync_dir, Log, LogConfig};
use crate::replica_gate::ReplicaGate;
use crate::snapshot::{self, OpenError, Snapshot};
use crate::wal::WalCapture;
use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const CONTROL_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecoveryModel {
    Full,
    Simple,
}

impl RecoveryModel {
    pub fn desc(self) -> &'static str {
        match self {
            RecoveryModel::Full => "FULL",
            RecoveryModel::Simple => "SIMPLE",
        }
    }
}

/// sys.databases.state_desc
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DbState {
    Online,
    Restoring,
    Suspect,
}

impl DbState {
    pub fn desc(self) -> &'static str {
        match self {
            DbState::Online => "ONLINE",
            DbState::Restoring => "RESTORING",
            DbState::Suspect => "SUSPECT",
        }
    }
}

/// Physical recovery state kept beside the database file (fsynced on every change, which is rare).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Control {
    pub format_version: u32,
    pub name: String,
    pub guid: String,
    pub page_size: u32,
    /// Fork id: changes at every failover, so diverged histories can be told apart.
    pub epoch: u64,
    /// Every block up to this LSN is in the database file itself.
    pub checkpoint_lsn: u64,
    pub recovery_model: RecoveryModel,
    /// LSN of the last full, non-COPY_ONLY backup.
    pub database_backup_lsn: u64,
    /// A full backup began a log backup chain; until then FULL truncates the log as SIMPLE does.
    #[serde(default)]
    pub backup_chain: bool,
    pub last_log_backup_lsn: u64,
    /// 0 = unlimited.
    pub max_log_bytes: u64,
    pub state: DbState,
    /// A secondary replica only redoes the primary's log: users read it, nobody writes it.
    #[serde(default)]
    pub role: Role,
    /// Seeding: the copy is fuzzy until redo reaches this LSN; the database stays RESTORING until then.
    #[serde(default)]
    pub consistent_at: Option<u64>,
    /// Seeding resumes from this page after an interruption.
    #[serde(default)]
    pub seed_next_page: u32,
    /// Log kept for replicas and seedings survives restarts of this instance.
    #[serde(default)]
    pub log_holds: std::collections::BTreeMap<String, u64>,
    /// Which epoch wrote which LSNs (see [`crate::timeline`]); empty means one epoch since LSN 1.
    #[serde(default)]
    pub history: crate::timeline::History,
}

impl Control {
    /// The timeline, with the implicit single epoch of databases created before timelines were recorded.
    pub fn timeline(&self) -> crate::timeline::History {
        if self.history.is_empty() {
            vec![(self.epoch, 1)]
        } else {
            self.history.clone()
        }
    }

    /// Start a new epoch whose first block will be `first_lsn`.
    pub fn new_epoch(&mut self, first_lsn: u64) -> u64 {
        let mut h = self.timeline();
        self.epoch = crate::timeline::next_epoch(self.epoch);
        h.retain(|(_, f)| *f < first_lsn);
        h.push((self.epoch, first_lsn));
        self.history = h;
        self.epoch
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    #[default]
    Primary,
    Secondary,
}

impl Control {
    /// The next log backup starts right after the last one, or after the full backup that began the chain.
    pub fn next_log_backup_lsn(&self) -> u64 {
        if self.last_log_backup_lsn > 0 {
            self.last_log_backup_lsn + 1
        } else {
            self.database_backup_lsn + 1
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub page_size: u32,
    pub log: LogConfig,
    /// Checkpoint once the WAL holds this many frames.
    pub checkpoint_frames: u32,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            page_size: 4096,
            log: LogConfig::default(),
            checkpoint_frames: 4000,
        }
    }
}

/// A first-come, first-served queue for the database's one writer. Each waiter sleeps on its own condition
/// variable and a release wakes only the next in line: with many sessions, waking them all on every commit
/// costs more than the commit.
#[derive(Default)]
struct WriterLock {
    st: Mutex<WriterState>,
}

#[derive(Default)]
struct WriterState {
    holder: Option<u64>,
    queue: VecDeque<(u64, Arc<Condvar>)>,
}

impl WriterState {
    fn wake_front(&self) {
        if let Some((_, cv)) = self.queue.front() {
            cv.notify_one();
        }
    }
}

impl WriterLock {
    fn acquire(&self, who: u64, timeout: Option<Duration>, cancel: &AtomicBool) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.st.lock();
        if st.holder == Some(who) {
            return Ok(());
        }
        if st.holder.is_none() && st.queue.is_empty() {
            st.holder = Some(who);
            return Ok(());
        }
        let me = Arc::new(Condvar::new());
        st.queue.push_back((who, me.clone()));
        loop {
            if st.holder.is_none() && st.queue.front().is_some_and(|(w, _)| *w == who) {
                st.queue.pop_front();
                st.holder = Some(who);
                return Ok(());
            }
            let give_up = if cancel.load(Ordering::Relaxed) {
                Some(SqlError::cancelled())
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                Some(SqlError::lock_timeout())
            } else {
                None
            };
            if let Some(e) = give_up {
                st.queue.retain(|(w, _)| *w != who);
                if st.holder.is_none() {
                    st.wake_front();
                }
                return Err(e);
            }
            // Bounded waits so cancellation and LOCK_TIMEOUT are noticed even without a wake-up.
            let slice = Duration::from_millis(20);
            let wait = deadline
                .map(|d| d.saturating_duration_since(Instant::now()).min(slice))
                .unwrap_or(slice);
            me.wait_for(&mut st, wait);
        }
    }

    fn release(&self, who: u64) {
        let mut st = self.st.lock();
        if st.holder == Some(who) {
            st.holder = None;
            st.wake_front();
        }
    }
}

/// The durable state readers start from. `None` as snapshot: SQLite cannot take one of an empty WAL (fresh
/// after recovery or a checkpoint); readers then take the commit gate instead (see [`DbConn::begin_read`]).
type Durable = (u64, Option<Arc<Snapshot>>);

#[derive(Default)]
struct Snaps {
    durable: Durable,
    /// Taken at commit, published when their block is durable.
    pending: VecDeque<(u64, Arc<Snapshot>)>,
}

/// Why the log cannot be truncated further (sys.databases.log_reuse_wait_desc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReuse {
    /// First LSN that must be kept.
    pub keep_from: u64,
    pub reason: &'static str,
}

/// A database's log usage as SQL Server's log views present it.
#[derive(Debug, Clone)]
pub struct LogSpace {
    pub log_min_lsn: u64,
    pub log_end_lsn: u64,
    pub checkpoint_lsn: u64,
    pub last_log_backup_lsn: u64,
    /// The maximum log size when one is set, else the log's current size.
    pub total_bytes: u64,
    /// Bytes that cannot be reused yet (from the truncation point to the end).
    pub used_bytes: u64,
    pub retained_bytes: u64,
    pub since_last_backup_bytes: u64,
    pub since_checkpoint_bytes: u64,
    pub truncation_holdup: &'static str,
    pub recovery_model: RecoveryModel,
    pub last_commit_time_us: i64,
}

impl LogSpace {
    pub fn used_percent(&self) -> f64 {
        (self.used_bytes as f64 * 100.0 / self.total_bytes.max(1) as f64).min(100.0)
    }
}

/// Who holds the writer: sessions get ids from the instance; the engine's own jobs use this one.
const ENGINE_WRITER: u64 = u64::MAX;
/// A planned failover holding writes back.
const FENCE_WRITER: u64 = u64::MAX - 1;

static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub fn next_session_id() -> u64 {
    NEXT_SESSION.fetch_add(1, Ordering::Relaxed)
}

pub struct Database {
    pub name: String,
    pub id: i32,
    pub guid: [u8; 16],
    dir: PathBuf,
    db_path: PathBuf,
    log: Arc<Log>,
    control: Mutex<Control>,
    writer: WriterLock,
    capture: Mutex<WalCapture>,
    snaps: Mutex<Snaps>,
    snap_cv: Condvar,
    holds: Mutex<HashMap<String, u64>>,
    frames_in_wal: AtomicU32,
    ckpt_wanted: AtomicBool,
    /// The secondary's applier connection (kept open: redo runs continuously). Never read through it.
    applier: Mutex<Option<Connection>>,
    /// Synchronous commit with a secondary (see [`crate::replica_gate`]).
    gate: ReplicaGate,
    /// Redo: every block up to here is applied to the database (hardened blocks past it are not yet).
    applied_lsn: AtomicU64,
    /// Frames in the WAL after the applier's last commit (its WAL hook reports them).
    applier_frames: Arc<AtomicU32>,
    opts: DbOptions,
}

pub fn guid_hex(g: &[u8; 16]) -> String {
    g.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_guid_hex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut g = [0u8; 16];
    for (i, b) in g.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(g)
}

pub fn new_guid() -> [u8; 16] {
    let mut g = [0u8; 16];
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let pid = std::process::id() as u128;
    let n = NEXT_SESSION.fetch_add(1, Ordering::Relaxed) as u128;
    let x = t ^ (pid << 64) ^ (n << 96) ^ (&g as *const _ as usize as u128);
    g.copy_from_slice(&x.to_le_bytes());
    // Mix through crc so adjacent values differ everywhere.
    for i in 0..4 {
        let c = crc32fast::hash(&g[i * 4..]).to_le_bytes();
        for j in 0..4 {
            g[i * 4 + j] ^= c[j];
        }
    }
    g
}

pub(crate) fn write_control(dir: &Path, c: &Control) -> Result<()> {
    let tmp = dir.join("control.json.tmp");
    let data = serde_json::to_vec_pretty(c).map_err(|e| SqlError::io("encode control file", e))?;
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join("control.json"))?;
    sync_dir(dir)?;
    Ok(())
}

pub(crate) fn read_control(dir: &Path, name: &str) -> Result<Control> {
    let data = fs::read(dir.join("control.json"))?;
    let c: Control = serde_json::from_slice(&data)
        .map_err(|e| SqlError::corrupt(name, format!("control file is unreadable: {e}")))?;
    if c.format_version > CONTROL_VERSION {
        return Err(SqlError::new(
            946,
            16,
            format!("Cannot open database '{name}' version {}: this build supports up to {CONTROL_VERSION}.", c.format_version),
        ));
    }
    Ok(c)
}

fn raw_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The engine owns checkpoints: never let SQLite checkpoint by itself or on close.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(Duration::from_secs(30))?;
    collation::register(&conn)?;
    Ok(conn)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

impl Database {
    /// Create a new, empty database in `dir`.
    pub fn create(dir: &Path, name: &str, id: i32, opts: DbOptions) -> Result<Arc<Database>> {
        fs::create_dir_all(dir)?;
        let guid = new_guid();
        let db_path = dir.join("db.sqlite");
        {
            let conn = Connection::open(&db_path)?;
            conn.pragma_update(None, "page_size", opts.page_size)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // Materialise page 1 so the file exists at its page size before any block is logged.
            conn.execute_batch("PRAGMA user_version = 0; CREATE TABLE IF NOT EXISTS __milink_init(x); DROP TABLE __milink_init;")?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            fs::File::open(&db_path)?.sync_all()?;
        }
        let control = Control {
            format_version: CONTROL_VERSION,
            name: name.to_string(),
            guid: guid_hex(&guid),
            page_size: opts.page_size,
            epoch: 1,
            checkpoint_lsn: 0,
            recovery_model: RecoveryModel::Full,
            database_backup_lsn: 0,
            backup_chain: false,
            last_log_backup_lsn: 0,
            max_log_bytes: 0,
            state: DbState::Online,
            role: crate::database::Role::Primary,
            consistent_at: None,
            seed_next_page: 0,
            log_holds: Default::default(),
            history: vec![(1, 1)],
        };
        Log::create(
            &dir.join("log"),
            name,
            opts.page_size,
            guid,
            1,
            0,
            opts.log.clone(),
        )?
        .shutdown();
        write_control(dir, &control)?;
        Database::open(dir, id, opts)
    }

    /// Open a database: recover it first (discard WAL frames past the durable log, redo blocks after the last
    /// checkpoint through the applier), then serve it.
    pub fn open(dir: &Path, id: i32, opts: DbOptions) -> Result<Arc<Database>> {
        let probe = fs::read(dir.join("control.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string))
            .unwrap_or_else(|| dir.display().to_string());
        let mut control = read_control(dir, &probe)?;
        let name = control.name.clone();
        let guid = parse_guid_hex(&control.guid)
            .ok_or_else(|| SqlError::corrupt(&name, "control file has a bad guid"))?;
        let opts = DbOptions {
            page_size: control.page_size,
            ..opts
        };
        let db_path = dir.join("db.sqlite");
        let (log, report) = Log::open(
            &dir.join("log"),
            &name,
            control.page_size,
            guid,
            opts.log.clone(),
        )?;
        if report.torn_bytes_discarded > 0 {
            tracing::warn!(db = %name, bytes = report.torn_bytes_discarded, "recovery discarded a torn log tail");
        }
        // WAL frames are never trusted across a restart: what is durable is in the log.
        for ext in ["db.sqlite-wal", "db.sqlite-shm"] {
            let p = dir.join(ext);
            if p.exists() {
                fs::remove_file(&p)?;
            }
        }
        let durable = log.durable_lsn();
        let start = Instant::now();
        if control.checkpoint_lsn + 1 < log.first_lsn() && control.checkpoint_lsn < durable {
            return Err(SqlError::corrupt(
                &name,
                "the log does not reach back to the last checkpoint",
            ));
        }
        let redone = apply::redo_into_file(
            &db_path,
            control.page_size,
            (control.checkpoint_lsn + 1..=durable).map(|lsn| log.read_block(lsn)),
        )?;
        if control.checkpoint_lsn != durable {
            control.checkpoint_lsn = durable;
            write_control(dir, &control)?;
        }
        if redone > 0 {
            tracing::info!(db = %name, redone, ms = start.elapsed().as_millis() as u64, "recovery redid log blocks");
        }
        let db = Arc::new(Database {
            name: name.clone(),
            id,
            guid,
            dir: dir.to_path_buf(),
            db_path: db_path.clone(),
            log: log.clone(),
            control: Mutex::new(control),
            writer: WriterLock::default(),
            capture: Mutex::new(WalCapture::new(dir.join("db.sqlite-wal"), opts.page_size)),
            snaps: Mutex::new(Snaps::default()),
            snap_cv: Condvar::new(),
            holds: Mutex::new(HashMap::new()),
            frames_in_wal: AtomicU32::new(0),
            ckpt_wanted: AtomicBool::new(false),
            applier: Mutex::new(None),
            gate: ReplicaGate::default(),
            // Recovery above applied everything durable.
            applied_lsn: AtomicU64::new(durable),
            applier_frames: Arc::new(AtomicU32::new(0)),
            opts,
        });
        {
            let persisted = db.control.lock().log_holds.clone();
            db.holds.lock().extend(persisted);
        }
        // The state right after recovery is durable by construction.
        // A database still being seeded is not a valid SQLite file yet: nothing may open it through SQLite.
        if db.control().consistent_at.is_none() {
            db.republish(&raw_connection(&db_path)?)?;
        }
        let weak = Arc::downgrade(&db);
        log.set_on_durable(Box::new(move |lsn| {
            if let Some(db) = weak.upgrade() {
                db.publish_upto(db.gate.visible(lsn));
            }
        }));
        Ok(db)
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    pub fn control(&self) -> Control {
        self.control.lock().clone()
    }

    pub(crate) fn update_control(&self, f: impl FnOnce(&mut Control)) -> Result<()> {
        let mut c = self.control.lock();
        let mut next = c.clone();
        f(&mut next);
        write_control(&self.dir, &next)?;
        *c = next;
        Ok(())
    }

    pub fn set_recovery_model(&self, m: RecoveryModel) -> Result<()> {
        self.update_control(|c| {
            if c.recovery_model != m && m == RecoveryModel::Simple {
                // Switching to SIMPLE breaks the log backup chain, as in SQL Server.
                c.database_backup_lsn = 0;
                c.last_log_backup_lsn = 0;
                c.backup_chain = false;
            }
            c.recovery_model = m;
        })?;
        self.truncate_log()?;
        Ok(())
    }

    pub fn set_max_log_bytes(&self, bytes: u64) -> Result<()> {
        self.update_control(|c| c.max_log_bytes = bytes)
    }

    /// Readers may now start at any state up to `lsn`.
    fn publish_upto(&self, lsn: u64) {
        let mut s = self.snaps.lock();
        while s.pending.front().is_some_and(|(l, _)| *l <= lsn) {
            let (l, snap) = s.pending.pop_front().expect("front");
            s.durable = (l, Some(snap));
        }
        self.snap_cv.notify_all();
    }

    fn publish_visible(&self) {
        self.publish_upto(self.gate.visible(self.log.durable_lsn()));
    }

    /// The newest LSN readers may see: durable, and hardened by a synchronous secondary if there is one.
    pub fn visible_lsn(&self) -> u64 {
        self.gate.visible(self.log.durable_lsn())
    }

    /// Commit waits for the synchronous secondary from now on (it is in step at `hardened`).
    pub fn enable_sync_commit(&self, hardened: u64, session_timeout: Duration) {
        self.gate.enable(hardened, session_timeout);
        self.publish_visible();
    }

    /// Commits stop waiting for a secondary; what they wait for becomes visible.
    pub fn disable_sync_commit(&self) {
        self.gate.disable();
        self.publish_visible();
    }

    pub fn sync_commit_active(&self) -> bool {
        self.gate.active()
    }

    /// Commits that stopped waiting because the synchronous secondary was silent past its session timeout.
    pub fn sync_commit_timeouts(&self) -> u64 {
        self.gate.timeouts()
    }

    /// The synchronous secondary hardened everything up to `lsn`.
    pub fn replica_hardened(&self, lsn: u64) {
        self.gate.hardened(lsn);
        self.publish_visible();
    }

    /// After `lsn` is durable: wait for the synchronous secondary, or give up on it after its session timeout.
    /// A commit still waiting when this copy steps down (failover) cannot be reported as done.
    fn wait_replica(&self, lsn: u64) -> Result<()> {
        match self.gate.wait(lsn) {
            crate::replica_gate::Wait::Done => Ok(()),
            crate::replica_gate::Wait::TimedOut => {
                tracing::warn!(db = %self.name, lsn, "the synchronous secondary did not harden within its session timeout; committing without it");
                self.publish_visible();
                Ok(())
            }
            crate::replica_gate::Wait::SteppedDown => Err(SqlError::new(
                3981,
                16,
                format!("The transaction in database '{}' is durable here, but this replica stopped being the primary before the synchronous secondary confirmed it: whether it survives depends on the new primary. Check there before retrying.", self.name),
            )),
        }
    }

    /// Replace the published snapshot after a checkpoint restarted the WAL (the state itself is unchanged).
    fn republish(&self, conn: &Connection) -> Result<()> {
        let s = snapshot::take(conn).ok().map(Arc::new);
        let lsn = self.visible_lsn();
        let mut st = self.snaps.lock();
        st.pending.clear();
        st.durable = (lsn, s);
        self.snap_cv.notify_all();
        Ok(())
    }

    fn durable_snapshot(&self) -> Durable {
        self.snaps.lock().durable.clone()
    }

    fn wait_newer_snapshot(&self, than: u64, timeout: Duration) {
        let mut s = self.snaps.lock();
        if s.durable.0 <= than {
            self.snap_cv.wait_for(&mut s, timeout);
        }
    }

    /// A session's connection to this database.
    pub fn connect(self: &Arc<Self>) -> Result<DbConn> {
        let mut conn = raw_connection(&self.db_path)?;
        let frames = Arc::new(HookState::default());
        let f2 = frames.clone();
        conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, n: std::os::raw::c_int| {
                f2.frames.store(n as u32, Ordering::SeqCst);
                f2.commits.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        ))?;
        // One read outside a transaction, so the connection knows the file is in WAL mode before snapshot_open.
        conn.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
        Ok(DbConn {
            db: self.clone(),
            conn,
            frames,
            txn: TxnState::None,
        })
    }

    /// Log bytes still needed and why (log_reuse_wait_desc).
    pub fn log_reuse(&self) -> LogReuse {
        let c = self.control();
        let durable = self.log.durable_lsn();
        let mut keep = LogReuse {
            keep_from: durable + 1,
            reason: "NOTHING",
        };
        let mut consider = |lsn: u64, reason: &'static str| {
            if lsn < keep.keep_from {
                keep = LogReuse {
                    keep_from: lsn,
                    reason,
                };
            }
        };
        consider(c.checkpoint_lsn + 1, "CHECKPOINT");
        if c.recovery_model == RecoveryModel::Full && c.backup_chain {
            consider(c.next_log_backup_lsn(), "LOG_BACKUP");
        }
        for (who, lsn) in self.holds.lock().iter() {
            let reason = if who.starts_with("backup:") {
                "ACTIVE_BACKUP_OR_RESTORE"
            } else {
                "AVAILABILITY_REPLICA"
            };
            consider(*lsn, reason);
        }
        keep
    }

    /// Keep log from `lsn` on for `who` (a replica, a seeding, a running backup) until released. Holds of
    /// replicas and seedings are persisted, so a restart of this instance cannot lose log they still need.
    pub fn hold_log(&self, who: &str, lsn: u64) {
        self.holds.lock().insert(who.to_string(), lsn);
        // Persisting an older LSN only keeps more log, so the file is rewritten rarely, not on every ack.
        let stale = match self.control.lock().log_holds.get(who) {
            None => true,
            Some(p) => lsn < *p || lsn - *p >= 1024,
        };
        if !who.starts_with("backup:") && stale {
            if let Err(e) = self.update_control(|c| {
                c.log_holds.insert(who.to_string(), lsn);
            }) {
                tracing::error!(db = %self.name, error = %e, "cannot persist a log hold");
            }
        }
    }

    pub fn release_log(&self, who: &str) -> Result<()> {
        self.holds.lock().remove(who);
        if self.control.lock().log_holds.contains_key(who) {
            self.update_control(|c| {
                c.log_holds.remove(who);
            })?;
        }
        self.truncate_log()?;
        Ok(())
    }

    /// Log holds in force: (who, first LSN kept).
    pub fn log_holds(&self) -> Vec<(String, u64)> {
        self.holds
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub fn log_used_bytes(&self) -> u64 {
        self.log.bytes_from(self.log_reuse().keep_from)
    }

    /// Figures for sys.dm_db_log_stats, sys.dm_db_log_space_usage and DBCC SQLPERF(LOGSPACE).
    pub fn log_space(&self) -> LogSpace {
        let c = self.control();
        let st = self.log.stats();
        let reuse = self.log_reuse();
        let used = self.log.bytes_from(reuse.keep_from);
        // With no maximum, the log is at least one segment (what it allocates), or what it holds.
        let total = if c.max_log_bytes > 0 {
            c.max_log_bytes
        } else {
            st.retained_bytes.max(self.opts.log.segment_bytes)
        };
        LogSpace {
            log_min_lsn: st.first_lsn,
            log_end_lsn: st.durable_lsn,
            checkpoint_lsn: c.checkpoint_lsn,
            last_log_backup_lsn: c.last_log_backup_lsn,
            total_bytes: total,
            used_bytes: used,
            retained_bytes: st.retained_bytes,
            since_last_backup_bytes: self.log.bytes_from(c.next_log_backup_lsn()),
            since_checkpoint_bytes: self.log.bytes_from(c.checkpoint_lsn + 1),
            truncation_holdup: reuse.reason,
            recovery_model: c.recovery_model,
            last_commit_time_us: self.log.last_commit_time_us(),
        }
    }

    /// Free whole log segments nobody needs any more.
    pub fn truncate_log(&self) -> Result<u64> {
        let keep = self.log_reuse().keep_from;
        self.log.truncate_before(keep)
    }

    /// Refuse a new write when the log is at its maximum size, after trying a checkpoint if that is what holds it.
    fn check_log_space(&self, holding_writer: bool) -> Result<()> {
        let max = self.control.lock().max_log_bytes;
        if max == 0 || self.log_used_bytes() < max {
            return Ok(());
        }
        if self.log_reuse().reason == "CHECKPOINT" && holding_writer {
            self.checkpoint_locked()?;
            self.truncate_log()?;
            if self.log_used_bytes() < max {
                return Ok(());
            }
        }
        Err(SqlError::log_full(&self.name, self.log_reuse().reason))
    }

    /// Checkpoint now (CHECKPOINT statement, shutdown, backup).
    pub fn checkpoint(self: &Arc<Self>) -> Result<()> {
        if self.control().consistent_at.is_some() {
            return Ok(()); // seeding writes its file directly; there is no WAL to copy yet
        }
        let never = AtomicBool::new(false);
        self.writer.acquire(ENGINE_WRITER, None, &never)?;
        let res = self.checkpoint_locked();
        self.writer.release(ENGINE_WRITER);
        res?;
        self.truncate_log()?;
        Ok(())
    }

    /// With the writer held: make the log durable to the end, copy the WAL into the database file, record the
    /// checkpoint LSN. Never copies a frame whose block is not durable, because nothing newer exists.
    fn checkpoint_locked(&self) -> Result<()> {
        let conn = raw_connection(&self.db_path)?;
        // Never stall the writer behind a long reader: copy what can be copied and try again later.
        conn.busy_timeout(Duration::ZERO)?;
        let end = self.log.last_assigned_lsn();
        self.log.wait_durable(end)?;
        // The checkpoint publishes the state it copies: a synchronous secondary must have it first.
        self.wait_replica(end)?;
        fault::point("checkpoint.before");
        let (busy, log_frames, done): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        fault::point("checkpoint.after_copy");
        if busy == 0 && log_frames == done {
            self.update_control(|c| c.checkpoint_lsn = end)?;
            self.capture.lock().reset();
            self.frames_in_wal.store(0, Ordering::Relaxed);
        }
        // After RESTART the next writer gives the WAL new salts; publish a snapshot of this (durable) state now.
        self.republish(&conn)?;
        Ok(())
    }

    /// Redo blocks that were logged elsewhere (RESTORE LOG, a secondary's redo): log them under their original
    /// LSNs ([`Self::harden`]), then apply them ([`Self::apply_hardened`]). A database still being seeded is not yet a valid SQLite
    /// file, so its blocks go straight into the file; once redo passes the seeding's consistency point the
    /// database opens for readers and later blocks apply live, as one SQLite transaction per call.
    pub fn redo(&self, blocks: Vec<Block>) -> Result<()> {
        self.harden(&blocks)?;
        self.apply_hardened(blocks)
    }

    /// First half of redo: make the blocks durable in this copy's own log under their LSNs (a synchronous
    /// secondary acknowledges at this point, as SQL Server's does; recovery redoes them if the apply is lost).
    /// Returns the last LSN hardened.
    pub fn harden(&self, blocks: &[Block]) -> Result<u64> {
        self.harden_as(blocks, None)
    }

    /// [`Self::harden`] for a secondary's redo: refused once this copy is primary (a failover that won the
    /// writer before this batch), so the primary's old log never lands after the new epoch began.
    pub fn harden_replica(&self, blocks: &[Block]) -> Result<u64> {
        self.harden_as(blocks, Some(Role::Secondary))
    }

    fn harden_as(&self, blocks: &[Block], role: Option<Role>) -> Result<u64> {
        if blocks.is_empty() {
            return Ok(self.log.durable_lsn());
        }
        let never = AtomicBool::new(false);
        self.writer.acquire(ENGINE_WRITER, None, &never)?;
        let res = (|| {
            if role.is_some_and(|r| r != self.role()) {
                return Err(SqlError::new(
                    3906,
                    16,
                    format!("Database '{}' is the primary here now: it takes no more log from the former primary.", self.name),
                ));
            }
            let mut last = 0;
            for b in blocks {
                last = self.log.append_external(b.clone())?;
            }
            // A block from a newer epoch (the primary failed over) extends this copy's timeline (once the
            // blocks are queued: a refused append leaves the timeline as it was).
            let mut epoch = self.control.lock().epoch;
            for b in blocks {
                if b.epoch != epoch && b.epoch != 0 {
                    self.update_control(|c| {
                        let mut h = c.timeline();
                        h.retain(|(_, f)| *f < b.lsn);
                        h.push((b.epoch, b.lsn));
                        c.history = h;
                        c.epoch = b.epoch;
                    })?;
                    epoch = b.epoch;
                }
            }
            self.log.wait_durable(last)?;
            Ok(last)
        })();
        self.writer.release(ENGINE_WRITER);
        res
    }

    /// Second half of redo: apply hardened blocks to the database, in LSN order.
    pub fn apply_hardened(&self, blocks: Vec<Block>) -> Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        let never = AtomicBool::new(false);
        self.writer.acquire(ENGINE_WRITER, None, &never)?;
        let res = self.apply_locked(blocks);
        self.writer.release(ENGINE_WRITER);
        res
    }

    /// Apply everything hardened but not yet applied (an apply interrupted by a lost connection), from the log.
    fn apply_pending_locked(&self) -> Result<()> {
        let (from, to) = (
            self.applied_lsn.load(Ordering::SeqCst) + 1,
            self.log.durable_lsn(),
        );
        if from > to {
            return Ok(());
        }
        let blocks = (from..=to)
            .map(|lsn| self.log.read_block(lsn))
            .collect::<Result<Vec<_>>>()?;
        self.apply_locked(blocks)
    }

    /// With the writer held: apply `blocks`, first catching up on any hardened block an earlier apply missed,
    /// so the database never skips a block its log holds.
    fn apply_locked(&self, mut blocks: Vec<Block>) -> Result<()> {
        let applied = self.applied_lsn.load(Ordering::SeqCst);
        blocks.retain(|b| b.lsn > applied);
        if let Some(first) = blocks.first().map(|b| b.lsn) {
            if first > applied + 1 {
                let mut gap = (applied + 1..first)
                    .map(|lsn| self.log.read_block(lsn))
                    .collect::<Result<Vec<_>>>()?;
                gap.append(&mut blocks);
                blocks = gap;
            }
        }
        let Some(last) = blocks.last().map(|b| b.lsn) else {
            return Ok(());
        };
        let res = (|| {
            let c = self.control();
            if c.consistent_at.is_some() {
                apply::redo_into_file(&self.db_path, c.page_size, blocks.into_iter().map(Ok))?;
                let consistent = c.consistent_at.is_some_and(|e| last >= e);
                self.update_control(|c| {
                    c.checkpoint_lsn = last;
                    if consistent {
                        c.consistent_at = None;
                        c.state = DbState::Online;
                    }
                })?;
                if consistent {
                    self.republish(&raw_connection(&self.db_path)?)?;
                }
                return Ok(());
            }
            let mut slot = self.applier.lock();
            if slot.is_none() {
                let mut conn = raw_connection(&self.db_path)?;
                let f = self.applier_frames.clone();
                conn.wal_hook(Some(
                    move |_: &mut rusqlite::hooks::Wal, n: std::os::raw::c_int| {
                        f.store(n as u32, Ordering::SeqCst);
                        Ok(())
                    },
                ))?;
                *slot = Some(conn);
            }
            let conn = slot.as_ref().expect("applier");
            apply::apply_blocks(conn, blocks.iter())?;
            // The applier's frames are not user commits: never capture them as new blocks.
            let frames = self.applier_frames.load(Ordering::SeqCst);
            self.capture.lock().skip_to(frames)?;
            // Copy the WAL into the file only now and then: each checkpoint costs fsyncs on the redo path.
            if frames >= self.opts.checkpoint_frames.min(2048) {
                let (busy, log_frames, done): (i64, i64, i64) =
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
                // When the WAL is fully in the file, the secondary's own log before `last` is no longer needed
                // for its recovery; record that now and then (each record costs an fsync) and let it truncate.
                if busy == 0
                    && log_frames == done
                    && last >= self.control.lock().checkpoint_lsn + 1024
                {
                    self.update_control(|c| c.checkpoint_lsn = last)?;
                    self.truncate_log()?;
                }
            }
            self.republish(conn)?;
            Ok(())
        })();
        if res.is_ok() {
            self.applied_lsn.store(last, Ordering::SeqCst);
        }
        res
    }

    /// Seeding target: write copied pages straight into the (not yet valid) file.
    pub fn seed_write_pages(&self, pages: &[(u32, Vec<u8>)]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if self.control().consistent_at.is_none() {
            return Err(SqlError::new(
                1475,
                16,
                format!("Database '{}' is not being seeded.", self.name),
            ));
        }
        let f = fs::OpenOptions::new().write(true).open(&self.db_path)?;
        let ps = self.opts.page_size as u64;
        for (pgno, data) in pages {
            if *pgno == 0 || data.len() as u64 != ps {
                return Err(SqlError::new(
                    1478,
                    16,
                    format!(
                        "Seeding of database '{}' received a malformed page {pgno}.",
                        self.name
                    ),
                ));
            }
            f.write_all_at(data, (*pgno as u64 - 1) * ps)?;
        }
        Ok(())
    }

    /// Seeding target: everything before `next_page` is on disk; an interrupted seeding resumes there.
    pub fn seed_checkpoint(&self, next_page: u32) -> Result<()> {
        fs::File::open(&self.db_path)?.sync_all()?;
        self.update_control(|c| c.seed_next_page = next_page)
    }

    /// Seeding target: the page copy ended when the source's log was at `end_lsn` with `page_count` pages;
    /// the database opens for readers once redo has reached `end_lsn`.
    pub fn seed_copy_done(&self, end_lsn: u64, page_count: u32) -> Result<()> {
        let f = fs::OpenOptions::new().write(true).open(&self.db_path)?;
        if f.metadata()?.len() < page_count as u64 * self.opts.page_size as u64 {
            f.set_len(page_count as u64 * self.opts.page_size as u64)?;
        }
        f.sync_all()?;
        let applied = self.applied_lsn.load(Ordering::SeqCst);
        let consistent = applied >= end_lsn;
        self.update_control(|c| {
            c.consistent_at = if consistent { None } else { Some(end_lsn) };
            if consistent {
                c.state = DbState::Online;
            }
        })?;
        if consistent {
            self.republish(&raw_connection(&self.db_path)?)?;
        }
        Ok(())
    }

    pub fn role(&self) -> Role {
        self.control.lock().role
    }

    /// This copy becomes the primary: a new epoch starts after the last durable block, so a copy that went on
    /// writing in the old epoch can later find where the histories forked. Returns the new epoch.
    pub fn promote(&self) -> Result<u64> {
        // Under the writer: a redo batch still being applied lands before the new epoch starts.
        let never = AtomicBool::new(false);
        self.writer.acquire(ENGINE_WRITER, None, &never)?;
        // Everything hardened is applied before this copy takes writes of its own.
        let r = self.apply_pending_locked();
        let next = self.log.durable_lsn() + 1;
        let mut epoch = 0;
        let r = r.and_then(|_| {
            self.update_control(|c| {
                c.role = Role::Primary;
                epoch = c.new_epoch(next);
            })
        });
        self.writer.release(ENGINE_WRITER);
        r.map(|_| epoch)
    }

    /// This copy becomes a secondary: it refuses writes (3906) and only redoes its primary's log.
    pub fn demote(&self) -> Result<()> {
        // Every commit logged before the fence is durable before the role changes and the copy joins a primary
        // (its Join must state its true end, or the fork would be found one block too early).
        self.log.wait_durable(self.log.last_assigned_lsn())?;
        self.gate.step_down();
        // Every block this copy logged as primary is in its database already: redo continues after them.
        self.applied_lsn
            .store(self.log.last_assigned_lsn(), Ordering::SeqCst);
        self.update_control(|c| c.role = Role::Secondary)
    }

    /// Which epoch wrote which LSNs.
    pub fn timeline(&self) -> crate::timeline::History {
        self.control.lock().timeline()
    }

    /// Hold the writer so no transaction can commit (a planned failover drains the primary this way);
    /// transactions already running finish first.
    pub fn fence_writes(&self, timeout: Duration) -> Result<()> {
        let never = AtomicBool::new(false);
        self.writer
            .acquire(FENCE_WRITER, Some(timeout), &never)
            .map_err(|e| {
                SqlError::new(
                    e.number,
                    16,
                    format!("Writes to database '{}' could not be stopped within {} seconds: a transaction is still open. Commit or roll it back and try again. ({})", self.name, timeout.as_secs(), e.message),
                )
            })
    }

    pub fn unfence_writes(&self) {
        self.writer.release(FENCE_WRITER);
    }

    /// Close: flush the log, checkpoint, stop the flusher.
    pub fn close(self: &Arc<Self>) -> Result<()> {
        if self.log.failed().is_none() {
            self.checkpoint()?;
        }
        self.log.shutdown();
        Ok(())
    }

    pub fn epoch(&self) -> u64 {
        self.control.lock().epoch
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnState {
    None,
    /// A read transaction opened on a durable snapshot (SNAPSHOT isolation keeps it for the whole transaction).
    Read,
    /// BEGIN IMMEDIATE under the engine's writer.
    Write,
}

/// What SQLite's WAL hook reported on one connection.
#[derive(Default)]
struct HookState {
    frames: AtomicU32,
    commits: std::sync::atomic::AtomicU64,
}

/// A session's connection to one database.
pub struct DbConn {
    db: Arc<Database>,
    conn: Connection,
    frames: Arc<HookState>,
    txn: TxnState,
}

/// How a write should wait for the writer.
pub struct WriteWait<'a> {
    pub session: u64,
    pub timeout: Option<Duration>,
    pub cancel: &'a AtomicBool,
    /// In a multi-statement transaction: wait until everything committed before is durable, so nothing this
    /// transaction reads and returns before its own commit can later be lost.
    pub explicit: bool,
}

impl DbConn {
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    pub fn sqlite(&self) -> &Connection {
        &self.conn
    }

    pub fn interrupt_handle(&self) -> rusqlite::InterruptHandle {
        self.conn.get_interrupt_handle()
    }

    pub fn in_write(&self) -> bool {
        self.txn == TxnState::Write
    }

    pub fn in_read(&self) -> bool {
        self.txn == TxnState::Read
    }

    /// Start a read transaction on the latest durable snapshot.
    pub fn begin_read(&mut self) -> Result<u64> {
        if self.txn != TxnState::None {
            return Ok(self.db.log.durable_lsn());
        }
        for _ in 0..2000 {
            let (lsn, snap) = self.db.durable_snapshot();
            if let Some(snap) = snap {
                match snapshot::begin_at(&self.conn, &snap)? {
                    Ok(()) => {
                        self.txn = TxnState::Read;
                        return Ok(lsn);
                    }
                    Err(OpenError::Stale) => {}
                    Err(OpenError::Other(rc)) => {
                        return Err(SqlError::new(
                            50000,
                            16,
                            format!("cannot open a read snapshot (SQLite code {rc})"),
                        ))
                    }
                }
            }
            // No openable snapshot (empty or restarted WAL). If nothing committed is waiting for its fsync, the
            // latest state is the durable one: start a plain read transaction while no commit can slip in.
            let gate = self.db.capture.lock();
            let durable = self.db.visible_lsn();
            if durable == self.db.log.last_assigned_lsn() {
                crate::snapshot::exec_cached(&self.conn, "BEGIN")?;
                self.conn
                    .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
                drop(gate);
                self.txn = TxnState::Read;
                return Ok(durable);
            }
            drop(gate);
            self.db.wait_newer_snapshot(lsn, Duration::from_millis(5));
        }
        Err(SqlError::new(
            50000,
            16,
            "cannot open a read snapshot: the database keeps restarting its WAL",
        ))
    }

    pub fn end_read(&mut self) -> Result<()> {
        if self.txn == TxnState::Read {
            self.txn = TxnState::None;
            crate::snapshot::exec_cached(&self.conn, "COMMIT")?;
        }
        Ok(())
    }

    /// Take the writer and begin a write transaction. Inside a SNAPSHOT read transaction the upgrade fails with
    /// 3960 if another transaction committed since the snapshot was taken.
    pub fn begin_write(&mut self, w: &WriteWait) -> Result<()> {
        if self.txn == TxnState::Write {
            return Ok(());
        }
        if let Some(e) = self.db.log.failed() {
            return Err(e);
        }
        let read_only = |name: &str| {
            SqlError::new(
                3906,
                16,
                format!("Failed to update database \"{name}\" because the database is read-only: it is a secondary replica that only redoes its primary's log."),
            )
        };
        if self.db.role() == Role::Secondary {
            return Err(read_only(&self.db.name));
        }
        self.db.writer.acquire(w.session, w.timeout, w.cancel)?;
        let res = (|| {
            // The role may have changed while this session queued for the writer (a failover fenced writes).
            if self.db.role() == Role::Secondary {
                return Err(read_only(&self.db.name));
            }
            if w.explicit {
                let last = self.db.log.last_assigned_lsn();
                self.db.log.wait_durable(last)?;
                self.db.wait_replica(last)?;
            }
            self.db.check_log_space(true)?;
            if self.txn == TxnState::Read {
                // Upgrade in place at the first write statement: SQLite answers SQLITE_BUSY_SNAPSHOT if the
                // snapshot is no longer the latest, which the session maps to 3960.
            } else {
                crate::snapshot::exec_cached(&self.conn, "BEGIN IMMEDIATE")?;
            }
            Ok(())
        })();
        match res {
            Ok(()) => {
                self.txn = TxnState::Write;
                Ok(())
            }
            Err(e) => {
                if self.txn == TxnState::Read {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.txn = TxnState::None;
                }
                self.db.writer.release(w.session);
                Err(e)
            }
        }
    }

    /// Commit the write transaction: capture its pages as one log block, queue it, release the writer, wait for
    /// durability. Returns the block's LSN (None if the transaction changed nothing).
    pub fn commit(&mut self, session: u64) -> Result<Option<u64>> {
        match self.txn {
            TxnState::None => return Ok(None),
            TxnState::Read => {
                self.end_read()?;
                return Ok(None);
            }
            TxnState::Write => {}
        }
        let db = self.db.clone();
        let before = self.frames.commits.load(Ordering::SeqCst);
        let res = (|| -> Result<Option<(u64, bool)>> {
            // The capture gate spans SQLite's commit to the log append: while it is held, "everything committed
            // is in the log queue" holds, which readers rely on when the WAL restarts under them.
            let mut cap = db.capture.lock();
            fault::point("commit.before_sqlite_commit");
            if let Err(e) = crate::snapshot::exec_cached(&self.conn, "COMMIT") {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(map_busy_snapshot(e, &db.name));
            }
            if self.frames.commits.load(Ordering::SeqCst) == before {
                return Ok(None); // nothing written
            }
            let n = self.frames.frames.load(Ordering::SeqCst);
            fault::point("commit.after_sqlite_commit");
            let mut block = cap.capture(n)?;
            if block.pgnos.is_empty() {
                return Ok(None);
            }
            block.epoch = db.epoch();
            block.commit_time_us = now_us();
            let snap = Arc::new(snapshot::take(&self.conn)?);
            // Queue the snapshot before the block, so the flusher can never publish past a missing snapshot.
            let lsn = {
                let mut snaps = db.snaps.lock();
                let lsn = db.log.append(block)?;
                snaps.pending.push_back((lsn, snap));
                lsn
            };
            drop(cap);
            db.frames_in_wal.store(n, Ordering::Relaxed);
            let want_ckpt =
                n >= db.opts.checkpoint_frames && !db.ckpt_wanted.swap(true, Ordering::SeqCst);
            Ok(Some((lsn, want_ckpt)))
        })();
        self.txn = TxnState::None;
        db.writer.release(session);
        let Some((lsn, want_ckpt)) = res? else {
            return Ok(None);
        };
        fault::point("commit.before_ack_wait");
        db.log.wait_durable(lsn)?;
        db.wait_replica(lsn)?;
        if want_ckpt {
            let r = db.checkpoint();
            db.ckpt_wanted.store(false, Ordering::SeqCst);
            r?;
        }
        Ok(Some(lsn))
    }

    pub fn rollback(&mut self, session: u64) -> Result<()> {
        let was = self.txn;
        self.txn = TxnState::None;
        if was != TxnState::None {
            let r = self.conn.execute_batch("ROLLBACK");
            if was == TxnState::Write {
                self.db.writer.release(session);
            }
            r?;
        }
        Ok(())
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        if self.txn != TxnState::None {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

fn map_busy_snapshot(e: rusqlite::Error, db: &str) -> SqlError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
            SqlError::snapshot_conflict(db)
        }
        _ => e.into(),
    }
}
