//! The physical log of one database: segment files of blocks, group commit, reading from any LSN, truncation.
//!
//! Commit path: the committing session (holding the database's writer) calls [`Log::append`], which numbers the
//! block and queues it; the flusher thread writes every queued block and pays ONE fdatasync for the batch (group
//! commit), then advances `durable_lsn` and runs the durability callback (which publishes the reader snapshot).
//! Sessions wait in [`Log::wait_durable`] before acknowledging.

pub mod format;

use crate::error::{Result, SqlError};
use crate::fault;
use format::{
    check_block, decode_block, Block, BlockHeader, FormatError, SegmentHeader, FORMAT_VERSION,
};
use parking_lot::{Condvar, Mutex};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Log files grow in zero-filled chunks of this size.
const PREALLOC_CHUNK: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A new segment file starts once the current one passes this size; truncation frees whole segments.
    pub segment_bytes: u64,
    pub compress: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 16 << 20,
            compress: true,
        }
    }
}

#[derive(Debug)]
struct Segment {
    first_lsn: u64,
    path: PathBuf,
    /// Byte offset of each block: block `first_lsn + i` starts at `offsets[i]`.
    offsets: Vec<u64>,
    len: u64,
}

impl Segment {
    fn last_lsn(&self) -> Option<u64> {
        if self.offsets.is_empty() {
            None
        } else {
            Some(self.first_lsn + self.offsets.len() as u64 - 1)
        }
    }
}

type DurableHook = Box<dyn Fn(u64) + Send + Sync>;

struct State {
    pending: Vec<Block>,
    next_lsn: u64,
    durable_lsn: u64,
    /// CRC of the last block written: the next one chains to it.
    last_crc: u32,
    last_commit_time_us: i64,
    segments: Vec<Segment>,
    /// Sticky: once a log write or fsync fails, nothing is acknowledged again until restart.
    failed: Option<SqlError>,
    shutdown: bool,
    flusher_running: bool,
    /// A group-commit leader is writing and fsyncing a batch.
    flushing: bool,
    /// Bytes written and fsyncs paid, for benchmarks and sys.dm_db_log_stats.
    bytes_written: u64,
    flushes: u64,
}

pub struct Log {
    dir: PathBuf,
    db_name: String,
    page_size: u32,
    db_guid: [u8; 16],
    cfg: LogConfig,
    state: Mutex<State>,
    work: Condvar,
    durable: Condvar,
    on_durable: Mutex<Option<DurableHook>>,
    /// The open segment file, used by whoever is flushing.
    file: Mutex<Option<(File, u64)>>,
}

/// What opening a log found on disk.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub last_lsn: u64,
    pub torn_bytes_discarded: u64,
}

impl Log {
    /// Create an empty log whose first block will be `first_lsn`.
    pub fn create(
        dir: &Path,
        db_name: &str,
        page_size: u32,
        db_guid: [u8; 16],
        first_lsn: u64,
        prev_crc: u32,
        cfg: LogConfig,
    ) -> Result<Arc<Log>> {
        fs::create_dir_all(dir)?;
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "mlog") {
                fs::remove_file(p)?;
            }
        }
        let seg = new_segment(dir, page_size, db_guid, first_lsn, prev_crc)?;
        let log = Log::assemble(
            dir,
            db_name,
            page_size,
            db_guid,
            cfg,
            vec![seg],
            first_lsn - 1,
            prev_crc,
            0,
        );
        Ok(log)
    }

    /// Open an existing log: verify every block's checksum and chain, cut a torn tail, refuse a corrupt middle.
    pub fn open(
        dir: &Path,
        db_name: &str,
        page_size: u32,
        db_guid: [u8; 16],
        cfg: LogConfig,
    ) -> Result<(Arc<Log>, OpenReport)> {
        let mut files: Vec<(u64, PathBuf)> = Vec::new();
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "mlog") {
                let mut hdr = [0u8; format::SEGMENT_HEADER_LEN];
                let f = File::open(&p)?;
                let n = f.read_at(&mut hdr, 0)?;
                let h = SegmentHeader::decode(&hdr[..n])
                    .map_err(|e| corrupt_or_version(db_name, &p, e))?;
                if h.db_guid != db_guid {
                    return Err(SqlError::corrupt(
                        db_name,
                        format!("log segment {} belongs to another database", p.display()),
                    ));
                }
                files.push((h.first_lsn, p));
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(SqlError::corrupt(
                db_name,
                "the transaction log has no segment files",
            ));
        }
        let mut report = OpenReport::default();
        let mut segments = Vec::new();
        let mut expect_lsn = files[0].0;
        let mut last_crc = None::<u32>;
        let mut last_time = 0i64;
        let nfiles = files.len();
        for (i, (first_lsn, path)) in files.into_iter().enumerate() {
            let is_last = i + 1 == nfiles;
            let bytes = fs::read(&path)?;
            let hdr =
                SegmentHeader::decode(&bytes).map_err(|e| corrupt_or_version(db_name, &path, e))?;
            if first_lsn != expect_lsn {
                return Err(SqlError::corrupt(
                    db_name,
                    format!(
                        "log segment {} starts at LSN {first_lsn}, expected {expect_lsn}",
                        path.display()
                    ),
                ));
            }
            let mut crc = last_crc.unwrap_or(hdr.prev_crc);
            if last_crc.is_some_and(|c| c != hdr.prev_crc) {
                return Err(SqlError::corrupt(
                    db_name,
                    format!(
                        "log segment {} does not chain to the previous one",
                        path.display()
                    ),
                ));
            }
            let mut off = format::SEGMENT_HEADER_LEN;
            let mut offsets = Vec::new();
            while off < bytes.len() {
                match check_block(&bytes[off..]) {
                    Ok(h) if h.lsn == expect_lsn && h.prev_crc == crc => {
                        offsets.push(off as u64);
                        off += h.len;
                        crc = h.crc;
                        expect_lsn += 1;
                        last_time = h.commit_time_us;
                    }
                    Ok(h) => {
                        return Err(SqlError::corrupt(
                            db_name,
                            format!(
                                "log block LSN {} breaks the chain (expected LSN {expect_lsn})",
                                h.lsn
                            ),
                        ));
                    }
                    Err(FormatError::Version(v)) => return Err(version_error(db_name, v)),
                    Err(_) if bytes[off..].iter().all(|b| *b == 0) => {
                        // Preallocated, never written: the clean end of this segment.
                        break;
                    }
                    Err(e) => {
                        // A bad block is a torn tail only if it is the last thing ever written.
                        if !is_last || valid_block_after(&bytes[off + 1..]) {
                            return Err(SqlError::corrupt(
                                db_name,
                                format!("log block LSN {expect_lsn}: {e}"),
                            ));
                        }
                        report.torn_bytes_discarded = (bytes.len() - off) as u64;
                        // Zero the torn bytes (keeping the preallocated space) so the tail reads as clean.
                        let f = OpenOptions::new().write(true).open(&path)?;
                        f.write_all_at(&vec![0u8; bytes.len() - off], off as u64)?;
                        f.sync_all()?;
                        tracing::warn!(
                            db = db_name,
                            lsn = expect_lsn,
                            bytes = report.torn_bytes_discarded,
                            "discarded torn log tail"
                        );
                        break;
                    }
                }
            }
            let len = off as u64;
            segments.push(Segment {
                first_lsn,
                path,
                offsets,
                len,
            });
            last_crc = Some(crc);
        }
        report.last_lsn = expect_lsn - 1;
        let log = Log::assemble(
            dir,
            db_name,
            page_size,
            db_guid,
            cfg,
            segments,
            expect_lsn - 1,
            last_crc.unwrap_or(0),
            last_time,
        );
        Ok((log, report))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dir: &Path,
        db_name: &str,
        page_size: u32,
        db_guid: [u8; 16],
        cfg: LogConfig,
        segments: Vec<Segment>,
        last_lsn: u64,
        last_crc: u32,
        last_time: i64,
    ) -> Arc<Log> {
        let log = Arc::new(Log {
            dir: dir.to_path_buf(),
            db_name: db_name.to_string(),
            page_size,
            db_guid,
            cfg,
            state: Mutex::new(State {
                pending: Vec::new(),
                next_lsn: last_lsn + 1,
                durable_lsn: last_lsn,
                last_crc,
                last_commit_time_us: last_time,
                segments,
                failed: None,
                shutdown: false,
                flusher_running: true,
                flushing: false,
                bytes_written: 0,
                flushes: 0,
            }),
            work: Condvar::new(),
            durable: Condvar::new(),
            on_durable: Mutex::new(None),
            file: Mutex::new(None),
        });
        let l2 = log.clone();
        std::thread::Builder::new()
            .name(format!("log-{db_name}"))
            .spawn(move || l2.flusher())
            .expect("spawn log flusher");
        log
    }

    pub fn set_on_durable(&self, hook: DurableHook) {
        *self.on_durable.lock() = Some(hook);
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queue a committed transaction's block; returns its LSN. Callers append in commit order (under the writer).
    pub fn append(&self, mut block: Block) -> Result<u64> {
        let mut st = self.state.lock();
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        block.lsn = st.next_lsn;
        st.next_lsn += 1;
        let lsn = block.lsn;
        st.pending.push(block);
        Ok(lsn)
    }

    /// Queue a block logged elsewhere under its own LSN, which must be the next one.
    pub fn append_external(&self, block: Block) -> Result<u64> {
        let mut st = self.state.lock();
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        if block.lsn != st.next_lsn {
            return Err(SqlError::new(
                4305,
                16,
                format!("The log in this backup set begins at LSN {}, which is not the next LSN ({}) of database '{}'.", block.lsn, st.next_lsn, self.db_name),
            ));
        }
        st.next_lsn += 1;
        let lsn = block.lsn;
        st.pending.push(block);
        Ok(lsn)
    }

    /// Block until `lsn` is durable (or the log failed). If nobody is flushing, this thread becomes the
    /// group-commit leader and flushes everything queued so far, its own block included.
    pub fn wait_durable(&self, lsn: u64) -> Result<()> {
        let mut st = self.state.lock();
        loop {
            if st.durable_lsn >= lsn {
                return Ok(());
            }
            if let Some(e) = &st.failed {
                return Err(e.clone());
            }
            if !st.flushing && !st.pending.is_empty() {
                st = self.flush_locked(st);
                continue;
            }
            self.durable.wait(&mut st);
        }
    }

    /// Wait up to `timeout` for the durable LSN to pass `after`; returns the durable LSN.
    pub fn wait_past(&self, after: u64, timeout: Duration) -> u64 {
        let mut st = self.state.lock();
        if st.durable_lsn <= after && st.failed.is_none() && !st.shutdown {
            self.durable.wait_for(&mut st, timeout);
        }
        st.durable_lsn
    }

    pub fn durable_lsn(&self) -> u64 {
        self.state.lock().durable_lsn
    }

    /// The LSN the next commit will get minus one: committed to SQLite, maybe not yet durable.
    pub fn last_assigned_lsn(&self) -> u64 {
        self.state.lock().next_lsn - 1
    }

    pub fn last_commit_time_us(&self) -> i64 {
        self.state.lock().last_commit_time_us
    }

    pub fn failed(&self) -> Option<SqlError> {
        self.state.lock().failed.clone()
    }

    pub fn stats(&self) -> LogStats {
        let st = self.state.lock();
        let first = st
            .segments
            .first()
            .map(|s| s.first_lsn)
            .unwrap_or(st.next_lsn);
        let total: u64 = st.segments.iter().map(|s| s.len).sum();
        LogStats {
            first_lsn: first,
            durable_lsn: st.durable_lsn,
            retained_bytes: total,
            segments: st.segments.len(),
            bytes_written: st.bytes_written,
            flushes: st.flushes,
            last_crc: st.last_crc,
        }
    }

    /// Bytes of log from `lsn` (inclusive) to the end: what a truncation at `lsn` would leave in use.
    pub fn bytes_from(&self, lsn: u64) -> u64 {
        let st = self.state.lock();
        let mut used = 0;
        for s in &st.segments {
            match s.last_lsn() {
                Some(last) if last >= lsn => {
                    let start = if lsn > s.first_lsn {
                        s.offsets[(lsn - s.first_lsn) as usize]
                    } else {
                        0
                    };
                    used += s.len - start;
                }
                _ => {}
            }
        }
        used
    }

    /// The first LSN still on disk.
    pub fn first_lsn(&self) -> u64 {
        let st = self.state.lock();
        st.segments
            .first()
            .map(|s| s.first_lsn)
            .unwrap_or(st.next_lsn)
    }

    /// Delete whole segments that hold only blocks below `lsn`. The segment being written is never deleted.
    pub fn truncate_before(&self, lsn: u64) -> Result<u64> {
        let mut freed = 0;
        loop {
            let victim = {
                let mut st = self.state.lock();
                if st.segments.len() < 2 || st.segments[1].first_lsn > lsn {
                    break;
                }
                st.segments.remove(0)
            };
            freed += victim.len;
            fs::remove_file(&victim.path)?;
        }
        if freed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(freed)
    }

    /// Where a durable block lives: (segment path, start offset, end offset).
    fn locate(&self, lsn: u64) -> Result<(PathBuf, u64, u64)> {
        let st = self.state.lock();
        let invalid = |why: &str| {
            SqlError::new(
                9003,
                20,
                format!("The log scan number ({lsn}) passed to log scan in database '{}' is not valid: {why}.", self.db_name),
            )
        };
        if lsn > st.durable_lsn || lsn == 0 {
            return Err(invalid("it is not in the durable log"));
        }
        let idx = st.segments.partition_point(|s| s.first_lsn <= lsn);
        match idx.checked_sub(1).and_then(|i| st.segments.get(i)) {
            Some(s) if (lsn - s.first_lsn) < s.offsets.len() as u64 => {
                let i = (lsn - s.first_lsn) as usize;
                Ok((
                    s.path.clone(),
                    s.offsets[i],
                    s.offsets.get(i + 1).copied().unwrap_or(s.len),
                ))
            }
            _ => Err(invalid("that part of the log has been truncated")),
        }
    }

    /// The raw encoded bytes and header of a durable block (for shipping and log backups: no re-encoding).
    pub fn read_raw(&self, lsn: u64) -> Result<(Vec<u8>, BlockHeader)> {
        let (path, off, next) = self.locate(lsn)?;
        let f = File::open(&path).map_err(|e| {
            SqlError::io(
                format!("open log segment {} for LSN {lsn}", path.display()),
                e,
            )
        })?;
        let mut buf = vec![0u8; (next - off) as usize];
        f.read_exact_at(&mut buf, off)?;
        let h = check_block(&buf)
            .map_err(|e| SqlError::corrupt(&self.db_name, format!("log block LSN {lsn}: {e}")))?;
        Ok((buf, h))
    }

    /// Read and decode one durable block by LSN.
    pub fn read_block(&self, lsn: u64) -> Result<Block> {
        let (buf, _) = self.read_raw(lsn)?;
        let (b, _) = decode_block(&buf, self.page_size)
            .map_err(|e| SqlError::corrupt(&self.db_name, format!("log block LSN {lsn}: {e}")))?;
        Ok(b)
    }

    /// Stop the flusher after it has written everything queued.
    pub fn shutdown(&self) {
        let mut st = self.state.lock();
        st.shutdown = true;
        self.work.notify_all();
        while st.flusher_running {
            self.durable.wait(&mut st);
        }
    }

    /// Background flusher: writes blocks nobody is waiting for (and drains at shutdown). Committers normally
    /// flush themselves in [`Log::wait_durable`], which saves two thread switches per commit.
    fn flusher(self: Arc<Self>) {
        let mut st = self.state.lock();
        loop {
            if !st.pending.is_empty() && !st.flushing {
                st = self.flush_locked(st);
                continue;
            }
            if st.shutdown && st.pending.is_empty() && !st.flushing {
                st.flusher_running = false;
                self.durable.notify_all();
                return;
            }
            // Committers lead their own flushes; this only catches blocks nobody waits for, so it can sleep long.
            self.work.wait_for(&mut st, Duration::from_millis(200));
        }
    }

    /// Group commit, leader side: take everything queued, write it, pay ONE fdatasync, publish. Called with the
    /// state lock held and no flush in progress; returns with the lock held again.
    fn flush_locked<'a>(
        &'a self,
        mut st: parking_lot::MutexGuard<'a, State>,
    ) -> parking_lot::MutexGuard<'a, State> {
        st.flushing = true;
        let batch = std::mem::take(&mut st.pending);
        let mut crc = st.last_crc;
        drop(st);
        let res = {
            let mut file = self.file.lock();
            let r = self.write_batch(&batch, &mut crc, &mut file);
            if r.is_err() {
                *file = None;
            }
            r
        };
        let mut st = self.state.lock();
        match res {
            Ok((written, new_offsets)) => {
                let last = batch.last().map(|b| b.lsn).unwrap_or(st.durable_lsn);
                if let Some(seg) = st.segments.last_mut() {
                    seg.offsets.extend(new_offsets);
                    seg.len += written;
                }
                st.last_crc = crc;
                st.last_commit_time_us = batch.last().map(|b| b.commit_time_us).unwrap_or(0);
                st.bytes_written += written;
                st.flushes += 1;
                drop(st);
                // Publish the readers' snapshot BEFORE anyone can see the new durable LSN: a committer that
                // returns from wait_durable must be able to read its own write.
                if let Some(h) = self.on_durable.lock().as_ref() {
                    h(last);
                }
                st = self.state.lock();
                st.durable_lsn = last;
            }
            Err(e) => {
                tracing::error!(db = %self.db_name, error = %e, "log write failed; the database stops accepting writes until restart");
                st.failed = Some(SqlError::new(
                    9001,
                    21,
                    format!(
                        "The log for database '{}' is not available: {}",
                        self.db_name, e.message
                    ),
                ));
            }
        }
        st.flushing = false;
        self.durable.notify_all();
        self.work.notify_one();
        st
    }

    /// Write a batch to the current segment (rotating first if it is full), then one fdatasync.
    fn write_batch(
        &self,
        batch: &[Block],
        crc: &mut u32,
        file: &mut Option<(File, u64)>,
    ) -> Result<(u64, Vec<u64>)> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        let (seg_path, seg_len, seg_first) = {
            let st = self.state.lock();
            let s = st.segments.last().expect("log has a segment");
            (s.path.clone(), s.len, s.first_lsn)
        };
        let first_lsn = batch[0].lsn;
        let mut base = seg_len;
        if seg_len >= self.cfg.segment_bytes && first_lsn > seg_first {
            let seg = new_segment(&self.dir, self.page_size, self.db_guid, first_lsn, *crc)?;
            base = seg.len;
            *file = None;
            self.state.lock().segments.push(seg);
        }
        let path = {
            self.state
                .lock()
                .segments
                .last()
                .map(|s| s.path.clone())
                .unwrap_or(seg_path)
        };
        if file.is_none() {
            let f = OpenOptions::new().write(true).open(&path)?;
            let allocated = f.metadata()?.len();
            *file = Some((f, allocated));
        }
        let (f, allocated) = file.as_mut().expect("segment open");
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(batch.len());
        for b in batch {
            let (bytes, c) = b.encode(*crc, self.cfg.compress);
            offsets.push(base + buf.len() as u64);
            buf.extend_from_slice(&bytes);
            *crc = c;
        }
        // Writes land in zero-filled, already allocated space, so fdatasync flushes data only, not the inode
        // (the file size and extents change once per chunk, not once per commit).
        let end = base + buf.len() as u64;
        if end > *allocated {
            let target = end.div_ceil(PREALLOC_CHUNK) * PREALLOC_CHUNK;
            let zeros = vec![0u8; (target - *allocated) as usize];
            f.write_all_at(&zeros, *allocated)?;
            *allocated = target;
        }
        if fault::should_fire("log.mid_write") {
            let half = buf.len() / 2;
            let _ = f.write_all_at(&buf[..half], base);
            let _ = f.sync_data();
            fault::die();
        }
        f.write_all_at(&buf, base)?;
        fault::point("log.before_fsync");
        f.sync_data()?;
        fault::point("log.after_fsync");
        Ok((buf.len() as u64, offsets))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.state.lock().shutdown = true;
        self.work.notify_all();
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LogStats {
    pub first_lsn: u64,
    pub durable_lsn: u64,
    pub retained_bytes: u64,
    pub segments: usize,
    pub bytes_written: u64,
    pub flushes: u64,
    pub last_crc: u32,
}

fn new_segment(
    dir: &Path,
    page_size: u32,
    db_guid: [u8; 16],
    first_lsn: u64,
    prev_crc: u32,
) -> Result<Segment> {
    let path = dir.join(format!("{first_lsn:020}.mlog"));
    let hdr = SegmentHeader {
        version: FORMAT_VERSION,
        page_size,
        db_guid,
        first_lsn,
        prev_crc,
    }
    .encode();
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    f.write_all(&hdr)?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok(Segment {
        first_lsn,
        path,
        offsets: Vec::new(),
        len: hdr.len() as u64,
    })
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn valid_block_after(bytes: &[u8]) -> bool {
    let magic = format::BLOCK_MAGIC.to_le_bytes();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        if bytes[i..i + 4] == magic && check_block(&bytes[i..]).is_ok() {
            return true;
        }
        i += 1;
    }
    false
}

fn version_error(db: &str, v: u32) -> SqlError {
    SqlError::new(
        946,
        16,
        format!("Cannot open database '{db}' version {v}. Upgrade the database to the latest version (this build reads log format {FORMAT_VERSION})."),
    )
}

fn corrupt_or_version(db: &str, path: &Path, e: FormatError) -> SqlError {
    match e {
        FormatError::Version(v) => version_error(db, v),
        e => SqlError::corrupt(db, format!("log segment {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: u8) -> Block {
        Block {
            lsn: 0,
            epoch: 1,
            commit_time_us: n as i64,
            db_pages: 2,
            page_size: 512,
            pgnos: vec![2],
            data: vec![n; 512],
        }
    }

    #[test]
    fn append_flush_reopen_and_read_any_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 2000,
            compress: false,
        };
        let log = Log::create(dir.path(), "t", 512, [1; 16], 1, 0, cfg.clone()).unwrap();
        for i in 1..=10u8 {
            let lsn = log.append(block(i)).unwrap();
            log.wait_durable(lsn).unwrap();
        }
        assert_eq!(log.durable_lsn(), 10);
        assert!(log.stats().segments > 1, "segments rotate");
        assert_eq!(log.read_block(7).unwrap().data[0], 7);
        log.shutdown();
        drop(log);
        let (log, rep) = Log::open(dir.path(), "t", 512, [1; 16], cfg).unwrap();
        assert_eq!(rep.last_lsn, 10);
        assert_eq!(log.read_block(3).unwrap().data[0], 3);
        let lsn = log.append(block(11)).unwrap();
        assert_eq!(lsn, 11);
        log.wait_durable(11).unwrap();
        assert!(log.truncate_before(8).unwrap() > 0);
        assert!(log.first_lsn() > 1 && log.first_lsn() <= 8);
        assert!(log.read_block(1).is_err());
        assert_eq!(log.read_block(9).unwrap().data[0], 9);
    }

    #[test]
    fn torn_tail_is_cut_and_mid_corruption_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 1 << 20,
            compress: true,
        };
        let log = Log::create(dir.path(), "t", 512, [1; 16], 1, 0, cfg.clone()).unwrap();
        for i in 1..=5u8 {
            let l = log.append(block(i)).unwrap();
            log.wait_durable(l).unwrap();
        }
        log.shutdown();
        drop(log);
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let full = fs::read(&seg).unwrap();
        // The file is preallocated with zeros past the last block: find the logical end.
        let end = full.iter().rposition(|b| *b != 0).unwrap() + 1;
        assert!(full.len() > end, "segments are preallocated");
        // Torn tail: the last block half written, zeros after it (as a crash mid-write leaves it).
        let mut torn = full.clone();
        torn[end - 20..].fill(0);
        fs::write(&seg, &torn).unwrap();
        let (log, rep) = Log::open(dir.path(), "t", 512, [1; 16], cfg.clone()).unwrap();
        assert_eq!(rep.last_lsn, 4);
        assert!(rep.torn_bytes_discarded > 0);
        // The log continues after the cut, and the reopened file reads back whole.
        let l = log.append(block(6)).unwrap();
        log.wait_durable(l).unwrap();
        assert_eq!(l, 5);
        log.shutdown();
        drop(log);
        let (log, rep) = Log::open(dir.path(), "t", 512, [1; 16], cfg.clone()).unwrap();
        assert_eq!((rep.last_lsn, rep.torn_bytes_discarded), (5, 0));
        assert_eq!(log.read_block(5).unwrap().data[0], 6);
        log.shutdown();
        drop(log);
        // Corrupt middle: flip a byte in block 2 of the original file.
        let mut bad = full.clone();
        bad[format::SEGMENT_HEADER_LEN + 60] ^= 1;
        let mid = format::SEGMENT_HEADER_LEN
            + check_block(&full[format::SEGMENT_HEADER_LEN..])
                .unwrap()
                .len
            + 50;
        bad[mid] ^= 0xff;
        fs::write(&seg, &bad).unwrap();
        let err = Log::open(dir.path(), "t", 512, [1; 16], cfg).err().unwrap();
        assert_eq!(err.number, 824);
    }
}
