//! Packet header, message reassembly and splitting of outgoing messages into packets.
use crate::wire::Reader;
use crate::DecodeError;

pub const HEADER_LEN: usize = 8;
pub const STATUS_EOM: u8 = 0x01;
pub const STATUS_IGNORE: u8 = 0x02;
pub const STATUS_RESET_CONNECTION: u8 = 0x08;
pub const STATUS_RESET_CONNECTION_SKIP_TRAN: u8 = 0x10;
/// Smallest and largest packet sizes SQL Server accepts in LOGIN7.
pub const MIN_PACKET_SIZE: u32 = 512;
pub const MAX_PACKET_SIZE: u32 = 32767;
pub const DEFAULT_PACKET_SIZE: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    SqlBatch,
    PreTds7Login,
    Rpc,
    TabularResult,
    Attention,
    BulkLoad,
    FedAuthToken,
    TransactionManager,
    Login7,
    Sspi,
    PreLogin,
    Other(u8),
}

impl PacketType {
    pub fn from_u8(b: u8) -> Self {
        match b {
            1 => Self::SqlBatch,
            2 => Self::PreTds7Login,
            3 => Self::Rpc,
            4 => Self::TabularResult,
            6 => Self::Attention,
            7 => Self::BulkLoad,
            8 => Self::FedAuthToken,
            14 => Self::TransactionManager,
            16 => Self::Login7,
            17 => Self::Sspi,
            18 => Self::PreLogin,
            o => Self::Other(o),
        }
    }
    pub fn to_u8(self) -> u8 {
        match self {
            Self::SqlBatch => 1,
            Self::PreTds7Login => 2,
            Self::Rpc => 3,
            Self::TabularResult => 4,
            Self::Attention => 6,
            Self::BulkLoad => 7,
            Self::FedAuthToken => 8,
            Self::TransactionManager => 14,
            Self::Login7 => 16,
            Self::Sspi => 17,
            Self::PreLogin => 18,
            Self::Other(o) => o,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub ty: PacketType,
    pub status: u8,
    /// Total packet length including the 8-byte header.
    pub length: u16,
    pub spid: u16,
    pub packet_id: u8,
    pub window: u8,
}

impl PacketHeader {
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let ty = PacketType::from_u8(r.u8()?);
        let status = r.u8()?;
        let length = r.u16_be()?;
        let spid = r.u16_be()?;
        let packet_id = r.u8()?;
        let window = r.u8()?;
        if (length as usize) < HEADER_LEN {
            return Err(DecodeError::Invalid("packet length below header size"));
        }
        Ok(PacketHeader {
            ty,
            status,
            length,
            spid,
            packet_id,
            window,
        })
    }
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = self.length.to_be_bytes();
        let s = self.spid.to_be_bytes();
        [
            self.ty.to_u8(),
            self.status,
            l[0],
            l[1],
            s[0],
            s[1],
            self.packet_id,
            self.window,
        ]
    }
    pub fn is_eom(&self) -> bool {
        self.status & STATUS_EOM != 0
    }
    pub fn payload_len(&self) -> usize {
        self.length as usize - HEADER_LEN
    }
}

/// A complete message (all packets up to EOM) from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub ty: PacketType,
    /// Status bits of the first packet (RESETCONNECTION lives there).
    pub status: u8,
    pub payload: Vec<u8>,
}

impl RawMessage {
    pub fn reset_connection(&self) -> bool {
        self.status & (STATUS_RESET_CONNECTION | STATUS_RESET_CONNECTION_SKIP_TRAN) != 0
    }
    pub fn reset_keeps_transaction(&self) -> bool {
        self.status & STATUS_RESET_CONNECTION_SKIP_TRAN != 0
    }
}

/// Incremental reassembly of packets into messages; feed bytes, pull messages.
/// Bounded: a message larger than `max_message` is an error, not an OOM.
#[derive(Debug)]
pub struct Reassembler {
    buf: Vec<u8>,
    current: Option<RawMessage>,
    max_message: usize,
}

impl Reassembler {
    pub fn new(max_message: usize) -> Self {
        Reassembler {
            buf: Vec::new(),
            current: None,
            max_message,
        }
    }
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    /// Returns the next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>, DecodeError> {
        loop {
            if self.buf.len() < HEADER_LEN {
                return Ok(None);
            }
            let h = PacketHeader::decode(&self.buf[..HEADER_LEN])?;
            let total = h.length as usize;
            if self.buf.len() < total {
                return Ok(None);
            }
            let payload = &self.buf[HEADER_LEN..total];
            // ATTENTION is a signal, never merged into a pending message.
            if h.ty == PacketType::Attention {
                self.buf.drain(..total);
                return Ok(Some(RawMessage {
                    ty: h.ty,
                    status: h.status,
                    payload: Vec::new(),
                }));
            }
            let msg = self.current.get_or_insert_with(|| RawMessage {
                ty: h.ty,
                status: h.status,
                payload: Vec::new(),
            });
            if msg.ty != h.ty {
                return Err(DecodeError::Invalid("packet type changed within a message"));
            }
            if msg.payload.len() + payload.len() > self.max_message {
                return Err(DecodeError::Invalid("message too large"));
            }
            msg.payload.extend_from_slice(payload);
            self.buf.drain(..total);
            if h.is_eom() {
                let m = self.current.take();
                // An IGNORE bit tells us to discard the message the client abandoned.
                if h.status & STATUS_IGNORE != 0 {
                    continue;
                }
                return Ok(m);
            }
        }
    }
}

/// Splits `payload` into packets of at most `packet_size` bytes (header included),
/// EOM on the last one only when `eom`. Returns the next packet id.
pub fn encode_packets(
    out: &mut Vec<u8>,
    ty: PacketType,
    payload: &[u8],
    packet_size: usize,
    spid: u16,
    mut packet_id: u8,
    eom: bool,
) -> u8 {
    let chunk = packet_size.clamp(MIN_PACKET_SIZE as usize, MAX_PACKET_SIZE as usize) - HEADER_LEN;
    let mut chunks = payload.chunks(chunk).peekable();
    if payload.is_empty() {
        let h = PacketHeader {
            ty,
            status: if eom { STATUS_EOM } else { 0 },
            length: HEADER_LEN as u16,
            spid,
            packet_id,
            window: 0,
        };
        out.extend_from_slice(&h.encode());
        return packet_id.wrapping_add(1);
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        let h = PacketHeader {
            ty,
            status: if last && eom { STATUS_EOM } else { 0 },
            length: (c.len() + HEADER_LEN) as u16,
            spid,
            packet_id,
            window: 0,
        };
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(c);
        packet_id = packet_id.wrapping_add(1);
    }
    packet_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let b = [0x12, 0x01, 0x00, 0x2F, 0x00, 0x00, 0x01, 0x00];
        let h = PacketHeader::decode(&b).unwrap();
        assert_eq!(h.ty, PacketType::PreLogin);
        assert!(h.is_eom());
        assert_eq!(h.length, 47);
        assert_eq!(h.encode(), b);
        assert!(PacketHeader::decode(&[1, 1, 0, 4, 0, 0, 0, 0]).is_err());
        assert!(PacketHeader::decode(&[1, 1]).is_err());
    }

    #[test]
    fn split_and_reassemble() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let next = encode_packets(&mut out, PacketType::SqlBatch, &payload, 512, 7, 1, true);
        assert_eq!(next, 1 + 3000u32.div_ceil(504) as u8);
        let mut r = Reassembler::new(1 << 20);
        // feed byte by byte to exercise partial headers
        for b in &out[..out.len() - 1] {
            r.push(&[*b]);
            assert_eq!(r.next_message().unwrap(), None);
        }
        r.push(&out[out.len() - 1..]);
        let m = r.next_message().unwrap().unwrap();
        assert_eq!(m.ty, PacketType::SqlBatch);
        assert_eq!(m.payload, payload);
        assert!(r.next_message().unwrap().is_none());
    }

    #[test]
    fn attention_and_reset_bits() {
        let mut r = Reassembler::new(1024);
        r.push(&[0x01, 0x09, 0x00, 0x0A, 0, 0, 1, 0, b'a', 0]);
        r.push(&[0x06, 0x01, 0x00, 0x08, 0, 0, 1, 0]);
        let m = r.next_message().unwrap().unwrap();
        assert!(m.reset_connection() && !m.reset_keeps_transaction());
        assert_eq!(r.next_message().unwrap().unwrap().ty, PacketType::Attention);
    }

    #[test]
    fn too_large_is_error() {
        let mut out = Vec::new();
        encode_packets(
            &mut out,
            PacketType::SqlBatch,
            &[0u8; 2000],
            512,
            0,
            1,
            true,
        );
        let mut r = Reassembler::new(1000);
        r.push(&out);
        assert!(r.next_message().is_err());
    }
}
