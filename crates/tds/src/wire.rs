//! Bounds-checked little helpers for reading untrusted bytes.
use crate::DecodeError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub(crate) type R<T> = Result<T, DecodeError>;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
    pub fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Eof)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Eof)?;
        self.pos = end;
        Ok(s)
    }
    pub fn arr<const N: usize>(&mut self) -> R<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub fn u8(&mut self) -> R<u8> {
        Ok(self.arr::<1>()?[0])
    }
    pub fn u16_le(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    pub fn u16_be(&mut self) -> R<u16> {
        Ok(u16::from_be_bytes(self.arr()?))
    }
    pub fn u32_le(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub fn u32_be(&mut self) -> R<u32> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    pub fn i32_le(&mut self) -> R<i32> {
        Ok(i32::from_le_bytes(self.arr()?))
    }
    pub fn u64_le(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    /// UCS-2 string of `chars` UTF-16 code units.
    pub fn ucs2(&mut self, chars: usize) -> R<String> {
        let b = self.take(chars.checked_mul(2).ok_or(DecodeError::Eof)?)?;
        Ok(utf16le_to_string(b))
    }
    /// B_VARCHAR: u8 char count + UCS-2.
    pub fn b_varchar(&mut self) -> R<String> {
        let n = self.u8()? as usize;
        self.ucs2(n)
    }
    /// US_VARCHAR: u16 char count + UCS-2.
    pub fn us_varchar(&mut self) -> R<String> {
        let n = self.u16_le()? as usize;
        self.ucs2(n)
    }
}

/// Lossy on unpaired surrogates: clients sending them get U+FFFD rather than an error.
pub(crate) fn utf16le_to_string(b: &[u8]) -> String {
    let units = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or('\u{FFFD}'))
        .collect()
}

pub(crate) fn put_utf16(out: &mut Vec<u8>, s: &str) {
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

pub(crate) fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// B_VARCHAR; longer strings are truncated to 255 code units (names, server name).
pub(crate) fn put_b_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    out.push(units.len() as u8);
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

/// US_VARCHAR; truncated to 65535 code units.
pub(crate) fn put_us_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(65535).collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
}
