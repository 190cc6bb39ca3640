//! BACKUP DATABASE / BACKUP LOG / RESTORE as engine operations. Backup files are self-describing, checksummed and
//! zstd-compressed; both directions stream with bounded memory.
//!
//! File layout: magic "MILNKBAK", u32 format version, u32 header length, header (JSON), u32 header CRC, then one
//! zstd frame of records (full: u32 page number + page; log: encoded log blocks, each self-checksummed), then a
//! trailer: magic "MILNKEND", u64 records, u64 raw bytes, u32 CRC of the raw stream, i64 finish time, u32 CRC.

use crate::database::{
    guid_hex, parse_guid_hex, write_control, Control, DbState, RecoveryModel, CONTROL_VERSION,
};
use crate::error::{Result, SqlError};
use crate::instance::Instance;
use crate::log::format::{self, decode_block, Block};
use crate::log::{Log, LogConfig};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const MAGIC: &[u8; 8] = b"MILNKBAK";
const END_MAGIC: &[u8; 8] = b"MILNKEND";
pub const BACKUP_FORMAT: u32 = 1;
const TRAILER_LEN: usize = 8 + 8 + 8 + 4 + 8 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupKind {
    Database,
    Log,
}

/// What RESTORE HEADERONLY shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupHeader {
    pub kind: BackupKind,
    pub backup_name: String,
    pub description: String,
    pub server_name: String,
    pub database_name: String,
    pub database_guid: String,
    pub page_size: u32,
    pub page_count: u32,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub database_backup_lsn: u64,
    pub checkpoint_lsn: u64,
    pub epoch: u64,
    pub is_copy_only: bool,
    pub recovery_model: RecoveryModel,
    /// Microseconds since the Unix epoch.
    pub backup_start_us: i64,
}

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub name: Option<String>,
    pub description: Option<String>,
    pub copy_only: bool,
    /// INIT/FORMAT: overwrite. NOINIT (default) on an existing file is refused rather than appended to: one
    /// backup set per file keeps the format simple; the message says so.
    pub init: bool,
    /// STATS = n: a progress callback every n percent.
    pub stats_percent: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub recovery: bool,
    pub replace: bool,
    /// STOPAT, microseconds since the Unix epoch (UTC).
    pub stop_at_us: Option<i64>,
    pub stats_percent: Option<u32>,
}

/// msdb.dbo.backupset
#[derive(Debug, Clone)]
pub struct BackupSetRow {
    pub database_name: String,
    /// D = database, L = log
    pub backup_type: String,
    pub name: Option<String>,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub database_backup_lsn: u64,
    pub checkpoint_lsn: u64,
    pub is_copy_only: bool,
    pub backup_start_date: String,
    pub backup_finish_date: String,
    pub backup_size: u64,
    pub compressed_backup_size: u64,
    pub physical_device_name: String,
}

/// What a backup or restore did, for the completion message.
#[derive(Debug, Clone)]
pub struct Summary {
    pub pages: u64,
    pub blocks: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub first_lsn: u64,
    pub last_lsn: u64,
    /// RESTORE ... STOPAT: whether the stop point fell inside this backup.
    pub stopped_at: bool,
}

pub type Progress<'a> = &'a mut dyn FnMut(u32);

fn media_error(path: &Path, why: impl std::fmt::Display) -> SqlError {
    SqlError::new(
        3241,
        16,
        format!("The media family on device '{}' is incorrectly formed. SQL Server cannot process this media family. ({why})", path.display()),
    )
}

fn fmt_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

struct Percent<'a> {
    every: Option<u32>,
    last: u32,
    cb: Progress<'a>,
}

impl Percent<'_> {
    fn report(&mut self, done: u64, total: u64) {
        let Some(every) = self.every.filter(|e| *e > 0) else {
            return;
        };
        let pct = (done * 100).checked_div(total).unwrap_or(100) as u32;
        while self.last + every <= pct.min(100) {
            self.last += every;
            (self.cb)(self.last);
        }
    }
}

/// A backup file being written: header, compressed records, trailer.
/// Removes a partial backup file unless the backup finished.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

struct Writer {
    path: Partial,
    enc: zstd::stream::write::Encoder<'static, BufWriter<File>>,
    crc: crc32fast::Hasher,
    records: u64,
    raw: u64,
}

impl Writer {
    fn create(path: &Path, header: &BackupHeader, init: bool) -> Result<Writer> {
        if path.exists() && !init {
            // Appending sets to a media file is not supported; say so instead of silently overwriting.
            let hdr = read_header(path).ok();
            if hdr.is_some() {
                return Err(SqlError::new(
                    4035,
                    16,
                    format!(
                        "The backup file '{}' already holds a backup set and milink keeps one backup set per file. Use WITH INIT or FORMAT to overwrite it, or choose another file.",
                        path.display()
                    ),
                ));
            }
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                return Err(SqlError::new(
                    3201,
                    16,
                    format!("Cannot open backup device '{}'. Operating system error 3(The system cannot find the path specified.).", path.display()),
                ));
            }
        }
        let tmp = path.with_extension("milink-partial");
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| {
                SqlError::new(
                    3201,
                    16,
                    format!(
                        "Cannot open backup device '{}'. Operating system error: {e}.",
                        path.display()
                    ),
                )
            })?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let json =
            serde_json::to_vec(header).map_err(|e| SqlError::io("encode backup header", e))?;
        let mut head = Vec::new();
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&BACKUP_FORMAT.to_le_bytes());
        head.extend_from_slice(&(json.len() as u32).to_le_bytes());
        head.extend_from_slice(&json);
        let crc = crc32fast::hash(&head);
        head.extend_from_slice(&crc.to_le_bytes());
        w.write_all(&head)?;
        let enc = zstd::stream::write::Encoder::new(w, 3)?;
        Ok(Writer {
            path: Partial(Some(tmp)),
            enc,
            crc: crc32fast::Hasher::new(),
            records: 0,
            raw: 0,
        })
    }

    fn record(&mut self, parts: &[&[u8]]) -> Result<()> {
        for p in parts {
            self.enc.write_all(p)?;
            self.crc.update(p);
            self.raw += p.len() as u64;
        }
        self.records += 1;
        Ok(())
    }

    /// Finish the stream, write the trailer, fsync, and only then move the file into place.
    fn finish(self, final_path: &Path) -> Result<u64> {
        let mut w = self.enc.finish()?;
        let mut t = Vec::with_capacity(TRAILER_LEN);
        t.extend_from_slice(END_MAGIC);
        t.extend_from_slice(&self.records.to_le_bytes());
        t.extend_from_slice(&self.raw.to_le_bytes());
        t.extend_from_slice(&self.crc.finalize().to_le_bytes());
        t.extend_from_slice(&now_us().to_le_bytes());
        let c = crc32fast::hash(&t);
        t.extend_from_slice(&c.to_le_bytes());
        w.write_all(&t)?;
        let f = w.into_inner().map_err(|e| SqlError::from(e.into_error()))?;
        f.sync_all()?;
        let size = f.metadata()?.len();
        let mut partial = self.path;
        fs::rename(partial.0.take().expect("partial path"), final_path)?;
        if let Some(dir) = final_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(size)
    }
}

/// Read and verify a backup file's header.
pub fn read_header(path: &Path) -> Result<BackupHeader> {
    let (h, _) = open_backup(path)?;
    Ok(h)
}

fn open_backup(path: &Path) -> Result<(BackupHeader, File)> {
    let mut f = File::open(path).map_err(|e| {
        SqlError::new(
            3201,
            16,
            format!(
                "Cannot open backup device '{}'. Operating system error: {e}.",
                path.display()
            ),
        )
    })?;
    let mut fixed = [0u8; 16];
    f.read_exact(&mut fixed)
        .map_err(|_| media_error(path, "file too short"))?;
    if &fixed[0..8] != MAGIC {
        return Err(media_error(path, "not a milink backup file"));
    }
    let version = format::u32_at(&fixed, 8);
    if version != BACKUP_FORMAT {
        return Err(SqlError::new(
            3169,
            16,
            format!("The backup file '{}' has format version {version}, which this build (version {BACKUP_FORMAT}) cannot restore.", path.display()),
        ));
    }
    let len = format::u32_at(&fixed, 12) as usize;
    if len > 1 << 20 {
        return Err(media_error(path, "header length is implausible"));
    }
    let mut json = vec![0u8; len + 4];
    f.read_exact(&mut json)
        .map_err(|_| media_error(path, "header is truncated"))?;
    let mut all = fixed.to_vec();
    all.extend_from_slice(&json[..len]);
    if crc32fast::hash(&all) != format::u32_at(&json, len) {
        return Err(media_error(path, "header checksum mismatch"));
    }
    let h: BackupHeader = serde_json::from_slice(&json[..len]).map_err(|e| media_error(path, e))?;
    Ok((h, f))
}

struct Trailer {
    records: u64,
    raw: u64,
    crc: u32,
    finish_us: i64,
}

fn read_trailer(path: &Path, f: &File) -> Result<(Trailer, u64)> {
    let size = f.metadata()?.len();
    if size < TRAILER_LEN as u64 {
        return Err(media_error(path, "file is truncated"));
    }
    let mut t = [0u8; TRAILER_LEN];
    f.read_exact_at(&mut t, size - TRAILER_LEN as u64)?;
    if &t[0..8] != END_MAGIC
        || crc32fast::hash(&t[..TRAILER_LEN - 4]) != format::u32_at(&t, TRAILER_LEN - 4)
    {
        return Err(media_error(
            path,
            "the backup is incomplete or its end is damaged",
        ));
    }
    Ok((
        Trailer {
            records: format::u64_at(&t, 8),
            raw: format::u64_at(&t, 16),
            crc: format::u32_at(&t, 24),
            finish_us: format::u64_at(&t, 28) as i64,
        },
        size - TRAILER_LEN as u64,
    ))
}

/// A verified reader over a backup's records.
struct Records {
    path: PathBuf,
    dec: zstd::stream::read::Decoder<'static, BufReader<std::io::Take<File>>>,
    crc: crc32fast::Hasher,
    raw: u64,
    trailer: Trailer,
}

impl Records {
    fn open(path: &Path) -> Result<(BackupHeader, Records)> {
        let (h, mut f) = open_backup(path)?;
        let (trailer, body_end) = read_trailer(path, &f)?;
        let pos = f.stream_position()?;
        f.seek(SeekFrom::Start(pos))?;
        let take = f.take(body_end.saturating_sub(pos));
        let dec = zstd::stream::read::Decoder::new(take).map_err(|e| media_error(path, e))?;
        Ok((
            h,
            Records {
                path: path.to_path_buf(),
                dec,
                crc: crc32fast::Hasher::new(),
                raw: 0,
                trailer,
            },
        ))
    }

    /// Fill `buf` exactly; Ok(false) at a clean end of stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.dec.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(media_error(&self.path, "record is truncated")),
                Ok(n) => got += n,
                Err(e) => return Err(media_error(&self.path, e)),
            }
        }
        self.crc.update(buf);
        self.raw += buf.len() as u64;
        Ok(true)
    }

    fn verify_end(self) -> Result<()> {
        let crc = self.crc.finalize();
        if crc != self.trailer.crc || self.raw != self.trailer.raw {
            return Err(media_error(
                &self.path,
                "checksum mismatch: the backup is damaged",
            ));
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn header_for(
    inst: &Instance,
    db: &crate::Database,
    c: &Control,
    kind: BackupKind,
    opts: &BackupOptions,
    page_count: u32,
    (first_lsn, last_lsn): (u64, u64),
    start_us: i64,
) -> BackupHeader {
    BackupHeader {
        kind,
        backup_name: opts.name.clone().unwrap_or_default(),
        description: opts.description.clone().unwrap_or_default(),
        server_name: inst.name.clone(),
        database_name: db.name.clone(),
        database_guid: guid_hex(&db.guid),
        page_size: c.page_size,
        page_count,
        first_lsn,
        last_lsn,
        database_backup_lsn: c.database_backup_lsn,
        checkpoint_lsn: c.checkpoint_lsn,
        epoch: c.epoch,
        is_copy_only: opts.copy_only,
        recovery_model: c.recovery_model,
        backup_start_us: start_us,
    }
}

/// BACKUP DATABASE: a consistent page copy as of the latest durable LSN.
pub fn backup_database(
    inst: &Instance,
    db_name: &str,
    path: &Path,
    opts: &BackupOptions,
    progress: Progress,
) -> Result<Summary> {
    let db = inst.database(db_name)?;
    let started = Instant::now();
    let start_us = now_us();
    let hold = format!("backup:{}", crate::database::next_session_id());
    db.hold_log(&hold, db.log().durable_lsn() + 1);
    let res = (|| {
        let mut conn = db.connect()?;
        let lsn = conn.begin_read()?;
        let c = db.control();
        let page_count: u32 = conn
            .sqlite()
            .query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let header = header_for(
            inst,
            &db,
            &c,
            BackupKind::Database,
            opts,
            page_count,
            (lsn, lsn),
            start_us,
        );
        let mut w = Writer::create(path, &header, opts.init)?;
        let mut pct = Percent {
            every: opts.stats_percent,
            last: 0,
            cb: progress,
        };
        {
            let mut st = conn
                .sqlite()
                .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
            let mut rows = st.query([])?;
            let mut n = 0u64;
            while let Some(r) = rows.next()? {
                let pgno: u32 = r.get(0)?;
                let data = r
                    .get_ref(1)?
                    .as_blob()
                    .map_err(|e| SqlError::io("read page", e))?;
                w.record(&[&pgno.to_le_bytes(), data])?;
                n += 1;
                pct.report(n, page_count as u64);
            }
        }
        conn.end_read()?;
        let pages = w.records;
        let raw = w.raw;
        let size = w.finish(path)?;
        pct.report(1, 1);
        if !opts.copy_only {
            db.update_control(|c| {
                c.database_backup_lsn = lsn;
                c.backup_chain = true;
            })?;
        }
        inst.record_backup(&BackupSetRow {
            database_name: db.name.clone(),
            backup_type: "D".into(),
            name: opts.name.clone(),
            first_lsn: lsn,
            last_lsn: lsn,
            database_backup_lsn: c.database_backup_lsn,
            checkpoint_lsn: c.checkpoint_lsn,
            is_copy_only: opts.copy_only,
            backup_start_date: fmt_time(start_us),
            backup_finish_date: fmt_time(now_us()),
            backup_size: raw,
            compressed_backup_size: size,
            physical_device_name: path.display().to_string(),
        })?;
        Ok(Summary {
            pages,
            blocks: 0,
            bytes: size,
            seconds: started.elapsed().as_secs_f64(),
            first_lsn: lsn,
            last_lsn: lsn,
            stopped_at: false,
        })
    })();
    db.release_log(&hold)?;
    res
}

/// BACKUP LOG: every durable block since the previous log backup (or the full backup that began the chain).
pub fn backup_log(
    inst: &Instance,
    db_name: &str,
    path: &Path,
    opts: &BackupOptions,
    progress: Progress,
) -> Result<Summary> {
    let db = inst.database(db_name)?;
    let c = db.control();
    if c.recovery_model == RecoveryModel::Simple {
        return Err(SqlError::new(
            4208,
            16,
            format!("The statement BACKUP LOG is not allowed while the recovery model is SIMPLE. Use BACKUP DATABASE or change the recovery model using ALTER DATABASE. (database '{}')", db.name),
        ));
    }
    if !c.backup_chain {
        return Err(SqlError::new(
            4214,
            16,
            format!("BACKUP LOG cannot be performed because there is no current database backup. (database '{}')", db.name),
        ));
    }
    let started = Instant::now();
    let start_us = now_us();
    let first = c.next_log_backup_lsn();
    let last = db.log().durable_lsn();
    let header = header_for(
        inst,
        &db,
        &c,
        BackupKind::Log,
        opts,
        0,
        (first, last),
        start_us,
    );
    let mut w = Writer::create(path, &header, opts.init)?;
    let mut pct = Percent {
        every: opts.stats_percent,
        last: 0,
        cb: progress,
    };
    let total = last.saturating_sub(first) + 1;
    for lsn in first..=last {
        let (raw, _) = db.log().read_raw(lsn)?;
        w.record(&[&raw])?;
        pct.report(lsn - first + 1, total);
    }
    let blocks = w.records;
    let raw = w.raw;
    let size = w.finish(path)?;
    pct.report(1, 1);
    if !opts.copy_only {
        db.update_control(|c| c.last_log_backup_lsn = last)?;
        db.truncate_log()?;
    }
    inst.record_backup(&BackupSetRow {
        database_name: db.name.clone(),
        backup_type: "L".into(),
        name: opts.name.clone(),
        first_lsn: first,
        last_lsn: last,
        database_backup_lsn: c.database_backup_lsn,
        checkpoint_lsn: c.checkpoint_lsn,
        is_copy_only: opts.copy_only,
        backup_start_date: fmt_time(start_us),
        backup_finish_date: fmt_time(now_us()),
        backup_size: raw,
        compressed_backup_size: size,
        physical_device_name: path.display().to_string(),
    })?;
    Ok(Summary {
        pages: 0,
        blocks,
        bytes: size,
        seconds: started.elapsed().as_secs_f64(),
        first_lsn: first,
        last_lsn: last,
        stopped_at: false,
    })
}

/// RESTORE VERIFYONLY: read everything, check every checksum, change nothing.
pub fn verify(path: &Path) -> Result<BackupHeader> {
    let (h, mut rec) = Records::open(path)?;
    let mut n = 0u64;
    match h.kind {
        BackupKind::Database => {
            let mut buf = vec![0u8; 4 + h.page_size as usize];
            while rec.read(&mut buf)? {
                n += 1;
            }
        }
        BackupKind::Log => {
            while let Some(b) = next_block(&mut rec, h.page_size)? {
                let _ = b;
                n += 1;
            }
        }
    }
    if n != rec.trailer.records {
        return Err(media_error(path, "record count mismatch"));
    }
    rec.verify_end()?;
    Ok(h)
}

fn next_block(rec: &mut Records, page_size: u32) -> Result<Option<Block>> {
    let mut head = [0u8; format::BLOCK_HEADER_LEN];
    if !rec.read(&mut head)? {
        return Ok(None);
    }
    let body = format::u32_at(&head, 4) as usize;
    if body > format::MAX_BODY || body as u64 > rec.trailer.raw {
        return Err(media_error(&rec.path, "log block length is implausible"));
    }
    let mut all = head.to_vec();
    all.resize(
        format::BLOCK_HEADER_LEN + body + format::BLOCK_TRAILER_LEN,
        0,
    );
    if !rec.read(&mut all[format::BLOCK_HEADER_LEN..])? {
        return Err(media_error(&rec.path, "log block is truncated"));
    }
    let (b, _) = decode_block(&all, page_size).map_err(|e| media_error(&rec.path, e))?;
    Ok(Some(b))
}

/// RESTORE DATABASE: rebuild the file page by page into a staging directory, verify, then swap it in.
pub fn restore_database(
    inst: &Arc<Instance>,
    db_name: &str,
    path: &Path,
    opts: &RestoreOptions,
    progress: Progress,
) -> Result<Summary> {
    let started = Instant::now();
    let (h, mut rec) = Records::open(path)?;
    if h.kind != BackupKind::Database {
        return Err(SqlError::new(
            3135,
            16,
            format!("The backup set in file '{}' was created by BACKUP LOG and cannot be used for this restore operation.", path.display()),
        ));
    }
    if let Ok(existing) = inst.database_any_state(db_name) {
        if !opts.replace && existing.control().state == DbState::Online {
            return Err(SqlError::new(
                3159,
                16,
                format!(
                    "The tail of the log for the database \"{}\" has not been backed up. Use BACKUP LOG WITH NORECOVERY to backup the log if it contains work you do not want to lose. Use the WITH REPLACE or WITH STOPAT clause of the RESTORE statement to just overwrite the contents of the log.",
                    existing.name
                ),
            ));
        }
    }
    let guid =
        parse_guid_hex(&h.database_guid).ok_or_else(|| media_error(path, "bad database guid"))?;
    let staging = inst.staging_dir()?;
    let res = (|| -> Result<Summary> {
        let db_file = staging.join("db.sqlite");
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&db_file)?;
        let ps = h.page_size as usize;
        let mut buf = vec![0u8; 4 + ps];
        let mut pct = Percent {
            every: opts.stats_percent,
            last: 0,
            cb: progress,
        };
        let mut pages = 0u64;
        while rec.read(&mut buf)? {
            let pgno = format::u32_at(&buf, 0);
            if pgno == 0 || pgno > h.page_count {
                return Err(media_error(
                    path,
                    format!("page number {pgno} out of range"),
                ));
            }
            f.write_all_at(&buf[4..], (pgno as u64 - 1) * ps as u64)?;
            pages += 1;
            pct.report(pages, h.page_count as u64);
        }
        if pages != rec.trailer.records || pages != h.page_count as u64 {
            return Err(media_error(path, "page count mismatch"));
        }
        let raw = rec.trailer.raw;
        rec.verify_end()?;
        f.set_len(h.page_count as u64 * ps as u64)?;
        f.sync_all()?;
        let control = Control {
            format_version: CONTROL_VERSION,
            name: db_name.to_string(),
            guid: h.database_guid.clone(),
            page_size: h.page_size,
            epoch: h.epoch,
            checkpoint_lsn: h.last_lsn,
            recovery_model: h.recovery_model,
            database_backup_lsn: h.last_lsn,
            backup_chain: true,
            last_log_backup_lsn: 0,
            max_log_bytes: 0,
            state: if opts.recovery {
                DbState::Online
            } else {
                DbState::Restoring
            },
            role: crate::database::Role::Primary,
            consistent_at: None,
            seed_next_page: 0,
            log_holds: Default::default(),
            history: Vec::new(),
        };
        Log::create(
            &staging.join("log"),
            db_name,
            h.page_size,
            guid,
            h.last_lsn + 1,
            0,
            LogConfig::default(),
        )?
        .shutdown();
        write_control(&staging, &control)?;
        Ok(Summary {
            pages,
            blocks: 0,
            bytes: raw,
            seconds: 0.0,
            first_lsn: h.first_lsn,
            last_lsn: h.last_lsn,
            stopped_at: false,
        })
    })();
    match res {
        Ok(mut s) => {
            inst.attach_prepared(db_name, &staging, true)?;
            s.seconds = started.elapsed().as_secs_f64();
            Ok(s)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// RESTORE LOG: roll a RESTORING database forward, optionally stopping at a point in time.
pub fn restore_log(
    inst: &Arc<Instance>,
    db_name: &str,
    path: &Path,
    opts: &RestoreOptions,
    progress: Progress,
) -> Result<Summary> {
    let started = Instant::now();
    let db = inst.database_any_state(db_name)?;
    if db.control().state != DbState::Restoring {
        return Err(SqlError::new(
            3117,
            16,
            format!("The log or differential backup cannot be restored because no files are ready to rollforward. (database '{}')", db.name),
        ));
    }
    // Check the chain from the header alone before reading (and trusting) any record.
    let h = read_header(path)?;
    if h.kind != BackupKind::Log {
        return Err(SqlError::new(
            3135,
            16,
            format!(
                "The backup set in file '{}' is not a log backup.",
                path.display()
            ),
        ));
    }
    if h.database_guid != guid_hex(&db.guid) {
        return Err(SqlError::new(
            3154,
            16,
            format!("The backup set holds a backup of a database other than the existing '{}' database.", db.name),
        ));
    }
    let next = db.log().durable_lsn() + 1;
    if h.first_lsn > next {
        return Err(SqlError::new(
            4305,
            16,
            format!(
                "The log in this backup set begins at LSN {}, which is too recent to apply to the database. An earlier log backup that includes LSN {next} can be restored.",
                h.first_lsn
            ),
        ));
    }
    if h.last_lsn < next && h.last_lsn >= h.first_lsn {
        return Err(SqlError::new(
            4326,
            16,
            format!(
                "The log in this backup set terminates at LSN {}, which is too early to apply to the database. A more recent log backup that includes LSN {next} can be restored.",
                h.last_lsn
            ),
        ));
    }
    let (_, mut rec) = Records::open(path)?;
    let mut pct = Percent {
        every: opts.stats_percent,
        last: 0,
        cb: progress,
    };
    let total = h.last_lsn.saturating_sub(h.first_lsn) + 1;
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut applied = 0u64;
    let mut applied_bytes = 0u64;
    let mut stopped = false;
    let mut n = 0u64;
    // Verify the whole file's checksum before applying anything: a damaged backup changes nothing.
    verify(path)?;
    while let Some(b) = next_block(&mut rec, h.page_size)? {
        n += 1;
        pct.report(n, total);
        if b.lsn < next {
            continue;
        }
        if opts.stop_at_us.is_some_and(|t| b.commit_time_us > t) {
            stopped = true;
            break;
        }
        bytes += b.data.len();
        applied_bytes += b.data.len() as u64;
        batch.push(b);
        applied += 1;
        if bytes > 32 << 20 {
            db.redo(std::mem::take(&mut batch))?;
            bytes = 0;
        }
    }
    db.redo(batch)?;
    if opts.recovery {
        let next = db.log().durable_lsn() + 1;
        db.update_control(|c| {
            c.state = DbState::Online;
            if stopped {
                // Everything after the stop point is a different history now.
                c.new_epoch(next);
            }
        })?;
    }
    Ok(Summary {
        pages: 0,
        blocks: applied,
        bytes: applied_bytes,
        seconds: started.elapsed().as_secs_f64(),
        first_lsn: h.first_lsn,
        last_lsn: db.log().durable_lsn(),
        stopped_at: stopped,
    })
}

/// RESTORE DATABASE d WITH RECOVERY (no file): bring a RESTORING database online.
pub fn recover(inst: &Instance, db_name: &str) -> Result<()> {
    let db = inst.database_any_state(db_name)?;
    db.update_control(|c| c.state = DbState::Online)
}

pub fn finish_time(path: &Path) -> Result<String> {
    let (_, f) = open_backup(path)?;
    let (t, _) = read_trailer(path, &f)?;
    Ok(fmt_time(t.finish_us))
}

pub fn start_time(h: &BackupHeader) -> String {
    fmt_time(h.backup_start_us)
}
