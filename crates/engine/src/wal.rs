//! Capture: read the frames one transaction appended to SQLite's -wal file, right after its commit and while the
//! engine's writer is still held, and turn them into one log block's page images.

use crate::error::Result;
use crate::log::format::Block;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

const WAL_HEADER: u64 = 32;
const FRAME_HEADER: usize = 24;

pub struct WalCapture {
    path: PathBuf,
    file: Option<File>,
    page_size: u32,
    salt: [u8; 8],
    /// Frames already turned into blocks (or known to be in the database file).
    captured: u32,
}

impl WalCapture {
    pub fn new(path: PathBuf, page_size: u32) -> Self {
        WalCapture {
            path,
            file: None,
            page_size,
            salt: [0; 8],
            captured: 0,
        }
    }

    /// Forget position: after a checkpoint restarted the WAL, or after recovery replaced it.
    pub fn reset(&mut self) {
        self.captured = 0;
        self.salt = [0; 8];
        self.file = None;
    }

    /// Mark the current end of the WAL as already captured (frames written by the applier, not user commits).
    pub fn skip_to(&mut self, frames: u32) -> Result<()> {
        self.refresh_salt()?;
        self.captured = frames;
        Ok(())
    }

    fn refresh_salt(&mut self) -> Result<bool> {
        if self.file.is_none() {
            self.file = Some(File::open(&self.path)?);
        }
        let f = self.file.as_ref().expect("wal open");
        let mut hdr = [0u8; WAL_HEADER as usize];
        f.read_exact_at(&mut hdr, 0)?;
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&hdr[16..24]);
        let restarted = salt != self.salt;
        self.salt = salt;
        Ok(restarted)
    }

    /// Collect frames (captured, n_frames] — one committed transaction — as a block without LSN.
    pub fn capture(&mut self, n_frames: u32) -> Result<Block> {
        if self.refresh_salt()? || n_frames < self.captured {
            // SQLite restarted the WAL from frame 1 for this transaction.
            self.captured = 0;
        }
        let ps = self.page_size as usize;
        let frame_len = FRAME_HEADER + ps;
        let first = self.captured;
        let count = n_frames.saturating_sub(first) as usize;
        let mut buf = vec![0u8; count * frame_len];
        let f = self.file.as_ref().expect("wal open");
        f.read_exact_at(&mut buf, WAL_HEADER + first as u64 * frame_len as u64)?;
        let mut order: Vec<u32> = Vec::new();
        let mut latest: HashMap<u32, usize> = HashMap::new();
        let mut db_pages = 0;
        for (i, fr) in buf.chunks_exact(frame_len).enumerate() {
            let pgno = u32::from_be_bytes([fr[0], fr[1], fr[2], fr[3]]);
            let commit = u32::from_be_bytes([fr[4], fr[5], fr[6], fr[7]]);
            if commit != 0 {
                db_pages = commit;
            }
            if latest.insert(pgno, i).is_none() {
                order.push(pgno);
            }
        }
        let mut data = Vec::with_capacity(order.len() * ps);
        for p in &order {
            let i = latest[p];
            data.extend_from_slice(&buf[i * frame_len + FRAME_HEADER..(i + 1) * frame_len]);
        }
        self.captured = n_frames;
        Ok(Block {
            lsn: 0,
            epoch: 0,
            commit_time_us: 0,
            db_pages,
            page_size: self.page_size,
            pgnos: order,
            data,
        })
    }
}
