//! The link's messages: what a primary and a secondary say to each other over the mirroring transport. Pure
//! encode/decode (fuzzed); every message carries its own length and a CRC, and the payloads of pages and log
//! blocks are zstd-compressed.

pub const PROTOCOL_VERSION: u16 = 2;
const MAGIC: u32 = 0x4D4C_4B31; // "MLK1"
const MAX_MESSAGE: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Secondary → primary: start or resume seeding/shipping of `database`; `have_lsn` is what it already holds
    /// (0: nothing), `next_page` where an interrupted page copy resumes, `history` its timeline (epoch, first LSN).
    Join {
        database: String,
        have_lsn: u64,
        next_page: u32,
        guid: [u8; 16],
        history: Vec<(u64, u64)>,
    },
    /// Dialer → listener when the dialer is the primary (after a failover): "join me as my secondary". A
    /// listener that still thinks it is primary compares timelines and steps down if the offer is newer.
    Offer {
        database: String,
        history: Vec<(u64, u64)>,
    },
    /// Primary → secondary: the two histories forked after `fork_lsn`; the secondary's log past it is not the
    /// primary's and must go (it is reseeded).
    Rewind { fork_lsn: u64 },
    /// Secondary → primary: a planned failover to this secondary was requested.
    FailoverRequest { require_synchronized: bool },
    /// Primary → secondary: writes are fenced and the log ends at `end_lsn`: become the primary.
    Handover { end_lsn: u64 },
    /// Secondary → primary: promoted; the new epoch starts after the handed-over `end_lsn`.
    HandoverDone { epoch: u64 },
    /// Primary → secondary: the outcome of a FailoverRequest (0 = done), with SQL Server's number.
    FailoverResult { number: i32, message: String },
    /// Dialer → listener: which database does distributed availability group `group` replicate? (A secondary
    /// that joined with T-SQL's JOIN AVAILABILITY GROUP learns it this way before it joins the database.)
    Resolve { group: String },
    /// Listener → dialer: the answer to Resolve.
    Resolved { database: String },
    /// Primary → secondary: a piece of one raw log block too large for one message (a very large transaction);
    /// the secondary joins the pieces and treats the block as if it came in Blocks.
    BlockChunk { data: Vec<u8>, last: bool },
    /// Primary → secondary: seeding starts from a fuzzy copy taken when the log ended at `start_lsn`.
    SeedBegin {
        database: String,
        guid: [u8; 16],
        page_size: u32,
        epoch: u64,
        start_lsn: u64,
        /// The source's size in pages when the copy began (for progress; the copy may grow).
        pages: u32,
    },
    /// Primary → secondary: pages of the copy (page number, image).
    Pages { pages: Vec<(u32, Vec<u8>)> },
    /// Primary → secondary: the copy is complete; redo must reach `end_lsn` before the copy is consistent.
    SeedEnd { end_lsn: u64, page_count: u32 },
    /// Primary → secondary: encoded log blocks, in LSN order.
    Blocks { blocks: Vec<Vec<u8>> },
    /// Secondary → primary: durable in the secondary's log up to `hardened`, applied up to `redone`.
    Ack {
        hardened: u64,
        redone: u64,
        next_page: u32,
    },
    /// Either way: refusal or failure, with SQL Server's number.
    Error { number: i32, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Incomplete,
    Corrupt(String),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_history(out: &mut Vec<u8>, h: &[(u64, u64)]) {
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    for (e, f) in h {
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(&f.to_le_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Rd<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() - self.at < n {
            return Err(DecodeError::Corrupt(
                "message body is shorter than its fields".into(),
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        let mut x = [0u8; 8];
        x.copy_from_slice(s);
        Ok(u64::from_le_bytes(x))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        if n > MAX_MESSAGE {
            return Err(DecodeError::Corrupt("field length is implausible".into()));
        }
        self.take(n)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| DecodeError::Corrupt("string is not UTF-8".into()))
    }
    fn history(&mut self) -> Result<Vec<(u64, u64)>, DecodeError> {
        let n = self.u32()? as usize;
        if n > 1 << 16 {
            return Err(DecodeError::Corrupt("timeline is implausibly long".into()));
        }
        let mut h = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            h.push((self.u64()?, self.u64()?));
        }
        Ok(h)
    }
    fn guid(&mut self) -> Result<[u8; 16], DecodeError> {
        let mut g = [0u8; 16];
        g.copy_from_slice(self.take(16)?);
        Ok(g)
    }
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Message::Join { .. } => 1,
            Message::SeedBegin { .. } => 2,
            Message::Pages { .. } => 3,
            Message::SeedEnd { .. } => 4,
            Message::Blocks { .. } => 5,
            Message::Ack { .. } => 6,
            Message::Error { .. } => 7,
            Message::Offer { .. } => 8,
            Message::Rewind { .. } => 9,
            Message::FailoverRequest { .. } => 10,
            Message::Handover { .. } => 11,
            Message::HandoverDone { .. } => 12,
            Message::FailoverResult { .. } => 13,
            Message::Resolve { .. } => 14,
            Message::Resolved { .. } => 15,
            Message::BlockChunk { .. } => 16,
        }
    }

    /// Frame: magic u32, version u16, kind u8, flags u8 (1 = zstd body), body length u32, body, CRC32 of all
    /// that precedes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Message::Join {
                database,
                have_lsn,
                next_page,
                guid,
                history,
            } => {
                put_str(&mut body, database);
                body.extend_from_slice(&have_lsn.to_le_bytes());
                body.extend_from_slice(&next_page.to_le_bytes());
                body.extend_from_slice(guid);
                put_history(&mut body, history);
            }
            Message::Offer { database, history } => {
                put_str(&mut body, database);
                put_history(&mut body, history);
            }
            Message::Rewind { fork_lsn } => body.extend_from_slice(&fork_lsn.to_le_bytes()),
            Message::FailoverRequest {
                require_synchronized,
            } => body.push(*require_synchronized as u8),
            Message::Handover { end_lsn } => body.extend_from_slice(&end_lsn.to_le_bytes()),
            Message::HandoverDone { epoch } => body.extend_from_slice(&epoch.to_le_bytes()),
            Message::FailoverResult { number, message } => {
                body.extend_from_slice(&number.to_le_bytes());
                put_str(&mut body, message);
            }
            Message::Resolve { group } => put_str(&mut body, group),
            Message::Resolved { database } => put_str(&mut body, database),
            Message::BlockChunk { data, last } => {
                body.push(*last as u8);
                put_bytes(&mut body, data);
            }
            Message::SeedBegin {
                database,
                guid,
                page_size,
                epoch,
                start_lsn,
                pages,
            } => {
                put_str(&mut body, database);
                body.extend_from_slice(guid);
                body.extend_from_slice(&page_size.to_le_bytes());
                body.extend_from_slice(&epoch.to_le_bytes());
                body.extend_from_slice(&start_lsn.to_le_bytes());
                body.extend_from_slice(&pages.to_le_bytes());
            }
            Message::Pages { pages } => {
                body.extend_from_slice(&(pages.len() as u32).to_le_bytes());
                for (p, d) in pages {
                    body.extend_from_slice(&p.to_le_bytes());
                    put_bytes(&mut body, d);
                }
            }
            Message::SeedEnd {
                end_lsn,
                page_count,
            } => {
                body.extend_from_slice(&end_lsn.to_le_bytes());
                body.extend_from_slice(&page_count.to_le_bytes());
            }
            Message::Blocks { blocks } => {
                body.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
                for b in blocks {
                    put_bytes(&mut body, b);
                }
            }
            Message::Ack {
                hardened,
                redone,
                next_page,
            } => {
                body.extend_from_slice(&hardened.to_le_bytes());
                body.extend_from_slice(&redone.to_le_bytes());
                body.extend_from_slice(&next_page.to_le_bytes());
            }
            Message::Error { number, message } => {
                body.extend_from_slice(&number.to_le_bytes());
                put_str(&mut body, message);
            }
        }
        // Log blocks are already compressed by the log: compressing them again only costs the primary CPU.
        let already_compressed =
            matches!(self, Message::Blocks { .. } | Message::BlockChunk { .. });
        let (flags, body) = if body.len() > 512 && !already_compressed {
            match engine::log::format::compress(&body) {
                Ok(c) if c.len() < body.len() => (1u8, c),
                _ => (0, body),
            }
        } else {
            (0, body)
        };
        let mut out = Vec::with_capacity(12 + body.len() + 4);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        out.push(self.kind());
        out.push(flags);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode one message from the front of `b`; returns it and the bytes consumed.
    pub fn decode(b: &[u8]) -> Result<(Message, usize), DecodeError> {
        if b.len() < 12 {
            return Err(DecodeError::Incomplete);
        }
        if u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != MAGIC {
            return Err(DecodeError::Corrupt("not a milink link message".into()));
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::Corrupt(format!("link protocol version {version} is not supported (this build speaks {PROTOCOL_VERSION})")));
        }
        let kind = b[6];
        let flags = b[7];
        let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        if len > MAX_MESSAGE {
            return Err(DecodeError::Corrupt("message length is implausible".into()));
        }
        if b.len() < 12 + len + 4 {
            return Err(DecodeError::Incomplete);
        }
        let crc = u32::from_le_bytes([b[12 + len], b[13 + len], b[14 + len], b[15 + len]]);
        if crc32fast::hash(&b[..12 + len]) != crc {
            return Err(DecodeError::Corrupt("message checksum mismatch".into()));
        }
        let raw = &b[12..12 + len];
        let owned;
        let body: &[u8] = if flags & 1 != 0 {
            let mut d = zstd::stream::read::Decoder::new(raw)
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
            let mut v = Vec::new();
            use std::io::Read;
            (&mut d)
                .take(MAX_MESSAGE as u64 + 1)
                .read_to_end(&mut v)
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
            if v.len() > MAX_MESSAGE {
                return Err(DecodeError::Corrupt(
                    "message expands past the limit".into(),
                ));
            }
            owned = v;
            &owned
        } else {
            raw
        };
        let mut r = Rd { b: body, at: 0 };
        let m = match kind {
            1 => Message::Join {
                database: r.string()?,
                have_lsn: r.u64()?,
                next_page: r.u32()?,
                guid: r.guid()?,
                history: r.history()?,
            },
            2 => Message::SeedBegin {
                database: r.string()?,
                guid: r.guid()?,
                page_size: r.u32()?,
                epoch: r.u64()?,
                start_lsn: r.u64()?,
                pages: r.u32()?,
            },
            3 => {
                let n = r.u32()? as usize;
                let mut pages = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    let p = r.u32()?;
                    pages.push((p, r.bytes()?.to_vec()));
                }
                Message::Pages { pages }
            }
            4 => Message::SeedEnd {
                end_lsn: r.u64()?,
                page_count: r.u32()?,
            },
            5 => {
                let n = r.u32()? as usize;
                let mut blocks = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    blocks.push(r.bytes()?.to_vec());
                }
                Message::Blocks { blocks }
            }
            6 => Message::Ack {
                hardened: r.u64()?,
                redone: r.u64()?,
                next_page: r.u32()?,
            },
            7 => Message::Error {
                number: r.i32()?,
                message: r.string()?,
            },
            8 => Message::Offer {
                database: r.string()?,
                history: r.history()?,
            },
            9 => Message::Rewind { fork_lsn: r.u64()? },
            10 => Message::FailoverRequest {
                require_synchronized: r.take(1)?[0] != 0,
            },
            11 => Message::Handover { end_lsn: r.u64()? },
            12 => Message::HandoverDone { epoch: r.u64()? },
            13 => Message::FailoverResult {
                number: r.i32()?,
                message: r.string()?,
            },
            14 => Message::Resolve { group: r.string()? },
            15 => Message::Resolved {
                database: r.string()?,
            },
            16 => {
                let last = r.take(1)?[0] != 0;
                Message::BlockChunk {
                    data: r.bytes()?.to_vec(),
                    last,
                }
            }
            k => return Err(DecodeError::Corrupt(format!("unknown message kind {k}"))),
        };
        if r.at != body.len() {
            return Err(DecodeError::Corrupt("trailing bytes in message".into()));
        }
        Ok((m, 12 + len + 4))
    }
}

/// Fuzz target: decoding arbitrary bytes never panics.
pub fn fuzz_decode(data: &[u8]) {
    let _ = Message::decode(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Join {
                database: "Sales".into(),
                have_lsn: 7,
                next_page: 3,
                guid: [9; 16],
                history: vec![(1, 1), (4 << 32 | 77, 50)],
            },
            Message::Offer {
                database: "Sales".into(),
                history: vec![(1, 1)],
            },
            Message::Rewind { fork_lsn: 90 },
            Message::FailoverRequest {
                require_synchronized: true,
            },
            Message::Handover { end_lsn: 120 },
            Message::HandoverDone { epoch: 1 << 32 | 3 },
            Message::FailoverResult {
                number: 41142,
                message: "not synchronized".into(),
            },
            Message::Resolve {
                group: "DAG_Sales".into(),
            },
            Message::Resolved {
                database: "Sales".into(),
            },
            Message::BlockChunk {
                data: vec![5; 3000],
                last: true,
            },
            Message::SeedBegin {
                database: "Sales".into(),
                guid: [1; 16],
                page_size: 4096,
                epoch: 2,
                start_lsn: 99,
                pages: 1000,
            },
            Message::Pages {
                pages: vec![(1, vec![7; 4096]), (2, vec![0; 4096])],
            },
            Message::SeedEnd {
                end_lsn: 120,
                page_count: 42,
            },
            Message::Blocks {
                blocks: vec![vec![1, 2, 3], vec![4; 3000]],
            },
            Message::Ack {
                hardened: 5,
                redone: 4,
                next_page: 0,
            },
            Message::Error {
                number: 41973,
                message: "certificate".into(),
            },
        ]
    }

    #[test]
    fn round_trip_every_message() {
        for m in samples() {
            let b = m.encode();
            let (d, n) = Message::decode(&b).unwrap();
            assert_eq!(d, m);
            assert_eq!(n, b.len());
            assert_eq!(
                Message::decode(&b[..b.len() - 1]),
                Err(DecodeError::Incomplete)
            );
        }
    }

    #[test]
    fn mutated_messages_never_panic() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for m in samples() {
            let b = m.encode();
            for _ in 0..600 {
                let mut v = b.clone();
                match next() % 3 {
                    0 => v.truncate((next() as usize) % (v.len() + 1)),
                    1 => {
                        let i = (next() as usize) % v.len();
                        v[i] ^= 1 << (next() % 8);
                    }
                    _ => {
                        let i = (next() as usize) % v.len().saturating_sub(4).max(1);
                        if i + 4 <= v.len() {
                            v[i..i + 4].copy_from_slice(&(next() as u32).to_le_bytes());
                        }
                    }
                }
                fuzz_decode(&v);
                // Also with a valid checksum, so the body parser itself is exercised.
                if v.len() >= 16 {
                    let n = v.len() - 4;
                    let c = crc32fast::hash(&v[..n]);
                    v[n..].copy_from_slice(&c.to_le_bytes());
                    fuzz_decode(&v);
                }
            }
        }
    }
}
