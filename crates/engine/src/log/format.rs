//! The on-disk shape of the log: segment headers and log blocks. Pure encode/decode, no I/O, so it can be fuzzed.
//!
//! A block is one committed transaction: the page images SQLite wrote for it, its LSN, the epoch (fork id), the
//! commit time and a CRC chained to the previous block, so a torn tail, a corrupt middle and a fork point can all
//! be told apart.

pub const SEGMENT_MAGIC: &[u8; 8] = b"MILNKLOG";
pub const FORMAT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: usize = 48;
pub const BLOCK_MAGIC: u32 = 0x4D4C_4231; // "MLB1"
pub const BLOCK_HEADER_LEN: usize = 52;
pub const BLOCK_TRAILER_LEN: usize = 4;
const FLAG_ZSTD: u8 = 1;
/// Upper bound on one block's payload; anything larger in a header is corruption, not a transaction.
pub const MAX_BODY: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u32,
    pub page_size: u32,
    pub db_guid: [u8; 16],
    pub first_lsn: u64,
    /// CRC of the block before `first_lsn` (0 for the first block ever), so chains span segments.
    pub prev_crc: u32,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.page_size.to_le_bytes());
        b[16..32].copy_from_slice(&self.db_guid);
        b[32..40].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[40..44].copy_from_slice(&self.prev_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[0..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, FormatError> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(FormatError::Incomplete);
        }
        if &b[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::Corrupt(
                "not a milink log segment (bad magic)".into(),
            ));
        }
        if crc32fast::hash(&b[0..44]) != u32_at(b, 44) {
            return Err(FormatError::Corrupt(
                "segment header checksum mismatch".into(),
            ));
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::Version(version));
        }
        let mut db_guid = [0u8; 16];
        db_guid.copy_from_slice(&b[16..32]);
        Ok(SegmentHeader {
            version,
            page_size: u32_at(b, 12),
            db_guid,
            first_lsn: u64_at(b, 32),
            prev_crc: u32_at(b, 40),
        })
    }
}

/// One committed transaction as page images.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Block {
    pub lsn: u64,
    pub epoch: u64,
    /// Microseconds since the Unix epoch, UTC.
    pub commit_time_us: i64,
    /// Database size in pages after this commit (shrinks after VACUUM).
    pub db_pages: u32,
    pub page_size: u32,
    pub pgnos: Vec<u32>,
    /// `pgnos.len() * page_size` bytes, page images in `pgnos` order.
    pub data: Vec<u8>,
}

impl Block {
    pub fn page(&self, i: usize) -> &[u8] {
        let ps = self.page_size as usize;
        &self.data[i * ps..(i + 1) * ps]
    }

    pub fn pages(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.pgnos
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, self.page(i)))
    }

    /// Encode with `prev_crc` chained in; returns the bytes and this block's CRC.
    pub fn encode(&self, prev_crc: u32, compress: bool) -> (Vec<u8>, u32) {
        let mut raw = Vec::with_capacity(self.pgnos.len() * (4 + self.page_size as usize));
        for (pgno, page) in self.pages() {
            raw.extend_from_slice(&pgno.to_le_bytes());
            raw.extend_from_slice(page);
        }
        let (flags, body) = if compress {
            match self::compress(&raw) {
                Ok(c) if c.len() < raw.len() => (FLAG_ZSTD, c),
                _ => (0, raw.clone()),
            }
        } else {
            (0, raw.clone())
        };
        let mut out = Vec::with_capacity(BLOCK_HEADER_LEN + body.len() + BLOCK_TRAILER_LEN);
        out.extend_from_slice(&BLOCK_MAGIC.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.lsn.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.commit_time_us.to_le_bytes());
        out.extend_from_slice(&self.db_pages.to_le_bytes());
        out.extend_from_slice(&(self.pgnos.len() as u32).to_le_bytes());
        out.extend_from_slice(&prev_crc.to_le_bytes());
        out.push(flags);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        debug_assert_eq!(out.len(), BLOCK_HEADER_LEN);
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        (out, crc)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Not enough bytes yet: at the end of a file this is a torn tail.
    Incomplete,
    Corrupt(String),
    Version(u32),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Incomplete => write!(f, "incomplete record"),
            FormatError::Corrupt(m) => write!(f, "{m}"),
            FormatError::Version(v) => {
                write!(f, "log format version {v} is not supported (this build reads version {FORMAT_VERSION})")
            }
        }
    }
}

/// What a block header says, readable without decompressing the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub lsn: u64,
    pub epoch: u64,
    pub commit_time_us: i64,
    pub db_pages: u32,
    pub n_pages: u32,
    pub prev_crc: u32,
    pub crc: u32,
    /// Whole encoded length, header to trailer.
    pub len: usize,
}

/// Check a block's framing and checksum without decoding its pages.
pub fn check_block(b: &[u8]) -> Result<BlockHeader, FormatError> {
    if b.len() < BLOCK_HEADER_LEN {
        return Err(FormatError::Incomplete);
    }
    if u32_at(b, 0) != BLOCK_MAGIC {
        return Err(FormatError::Corrupt("bad block magic".into()));
    }
    let body = u32_at(b, 4) as usize;
    if body > MAX_BODY {
        return Err(FormatError::Corrupt(format!(
            "block body length {body} is implausible"
        )));
    }
    let len = BLOCK_HEADER_LEN + body + BLOCK_TRAILER_LEN;
    if b.len() < len {
        return Err(FormatError::Incomplete);
    }
    let crc = u32_at(b, len - 4);
    if crc32fast::hash(&b[..len - 4]) != crc {
        return Err(FormatError::Corrupt(format!(
            "block checksum mismatch at LSN {}",
            u64_at(b, 8)
        )));
    }
    Ok(BlockHeader {
        lsn: u64_at(b, 8),
        epoch: u64_at(b, 16),
        commit_time_us: u64_at(b, 24) as i64,
        db_pages: u32_at(b, 32),
        n_pages: u32_at(b, 36),
        prev_crc: u32_at(b, 40),
        crc,
        len,
    })
}

/// Decode a whole block (checksum verified) given the database's page size.
pub fn decode_block(b: &[u8], page_size: u32) -> Result<(Block, BlockHeader), FormatError> {
    let h = check_block(b)?;
    let flags = b[44];
    let raw_len = u32_at(b, 44 + 4) as usize;
    let body = &b[BLOCK_HEADER_LEN..h.len - BLOCK_TRAILER_LEN];
    let rec = 4 + page_size as usize;
    if page_size < 512 || raw_len != h.n_pages as usize * rec || raw_len > MAX_BODY {
        return Err(FormatError::Corrupt(format!(
            "block at LSN {} has an inconsistent page count",
            h.lsn
        )));
    }
    let raw: std::borrow::Cow<[u8]> = if flags & FLAG_ZSTD != 0 {
        let v = decompress(body, raw_len).map_err(|e| {
            FormatError::Corrupt(format!("block at LSN {} does not decompress: {e}", h.lsn))
        })?;
        if v.len() != raw_len {
            return Err(FormatError::Corrupt(format!(
                "block at LSN {} decompressed to a wrong size",
                h.lsn
            )));
        }
        v.into()
    } else {
        if body.len() != raw_len {
            return Err(FormatError::Corrupt(format!(
                "block at LSN {} has a wrong body size",
                h.lsn
            )));
        }
        body.into()
    };
    let n = h.n_pages as usize;
    let mut pgnos = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(n * page_size as usize);
    for chunk in raw.chunks_exact(rec) {
        pgnos.push(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        data.extend_from_slice(&chunk[4..]);
    }
    let block = Block {
        lsn: h.lsn,
        epoch: h.epoch,
        commit_time_us: h.commit_time_us,
        db_pages: h.db_pages,
        page_size,
        pgnos,
        data,
    };
    Ok((block, h))
}

thread_local! {
    // A zstd context is megabytes to set up: one per thread, reused for every block.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// zstd level 1 with this thread's reusable context.
pub fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(1)?);
        }
        c.as_mut().expect("compressor").compress(raw)
    })
}

/// Decompress into at most `capacity` bytes with this thread's reusable context.
pub fn decompress(body: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("decompressor").decompress(body, capacity)
    })
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(lsn: u64) -> Block {
        let ps = 512u32;
        let mut data = vec![0u8; 2 * ps as usize];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 7) as u8;
        }
        Block {
            lsn,
            epoch: 1,
            commit_time_us: 1_700_000_000_000_000,
            db_pages: 9,
            page_size: ps,
            pgnos: vec![1, 9],
            data,
        }
    }

    #[test]
    fn round_trip_compressed_and_plain() {
        for compress in [false, true] {
            let b = sample(42);
            let (bytes, crc) = b.encode(7, compress);
            let (d, h) = decode_block(&bytes, 512).unwrap();
            assert_eq!(d, b);
            assert_eq!(h.prev_crc, 7);
            assert_eq!(h.crc, crc);
            assert_eq!(h.len, bytes.len());
        }
    }

    #[test]
    fn torn_and_flipped_blocks_are_detected() {
        let (bytes, _) = sample(1).encode(0, true);
        for cut in [0, 10, BLOCK_HEADER_LEN, bytes.len() - 1] {
            assert_eq!(check_block(&bytes[..cut]), Err(FormatError::Incomplete));
        }
        let mut bad = bytes.clone();
        bad[BLOCK_HEADER_LEN + 3] ^= 0x40;
        assert!(matches!(check_block(&bad), Err(FormatError::Corrupt(_))));
    }

    #[test]
    fn segment_header_round_trip_and_version_check() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            page_size: 4096,
            db_guid: [3; 16],
            first_lsn: 17,
            prev_crc: 99,
        };
        let e = h.encode();
        assert_eq!(SegmentHeader::decode(&e).unwrap(), h);
        let newer = SegmentHeader { version: 2, ..h };
        assert_eq!(
            SegmentHeader::decode(&newer.encode()),
            Err(FormatError::Version(2))
        );
    }
}
