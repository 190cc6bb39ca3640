//! ALL_HEADERS and SQL batch requests.
use crate::wire::{utf16le_to_string, Reader};
use crate::DecodeError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllHeaders {
    /// Transaction descriptor (8 bytes) from the client's last ENVCHANGE begin.
    pub transaction_descriptor: Option<u64>,
    pub outstanding_requests: Option<u32>,
    pub query_notification: bool,
    pub trace_activity: Option<Vec<u8>>,
}

impl AllHeaders {
    /// ALL_HEADERS is only present from TDS 7.2; detect it by a plausible total length.
    pub(crate) fn decode_optional(r: &mut Reader<'_>, data: &[u8]) -> Result<Self, DecodeError> {
        if data.len() < 4 {
            return Ok(AllHeaders::default());
        }
        let total = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        // A UCS-2 batch starting with text never looks like a small LE u32 >= 4 with
        // a matching first header, but the check must be conservative.
        if total < 4 || total > data.len() {
            return Ok(AllHeaders::default());
        }
        let mut h = AllHeaders::default();
        let body = r.take(total)?;
        let mut hr = Reader::new(body.get(4..).ok_or(DecodeError::Eof)?);
        while !hr.is_empty() {
            let len = hr.u32_le()? as usize;
            if len < 6 {
                return Err(DecodeError::Invalid("ALL_HEADERS header length"));
            }
            let ty = hr.u16_le()?;
            let d = hr.take(len - 6)?;
            let mut dr = Reader::new(d);
            match ty {
                1 => h.query_notification = true,
                2 => {
                    h.transaction_descriptor = Some(dr.u64_le()?);
                    h.outstanding_requests = Some(dr.u32_le()?);
                }
                3 => h.trace_activity = Some(d.to_vec()),
                _ => {}
            }
        }
        Ok(h)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        if let Some(td) = self.transaction_descriptor {
            body.extend_from_slice(&18u32.to_le_bytes());
            body.extend_from_slice(&2u16.to_le_bytes());
            body.extend_from_slice(&td.to_le_bytes());
            body.extend_from_slice(&self.outstanding_requests.unwrap_or(1).to_le_bytes());
        }
        let mut out = ((body.len() + 4) as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlBatch {
    pub headers: AllHeaders,
    pub sql: String,
}

impl SqlBatch {
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let headers = AllHeaders::decode_optional(&mut r, b)?;
        let rest = r.rest();
        if !rest.len().is_multiple_of(2) {
            return Err(DecodeError::Invalid("odd-length UCS-2 batch"));
        }
        Ok(SqlBatch {
            headers,
            sql: utf16le_to_string(rest),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.headers.encode();
        crate::wire::put_utf16(&mut out, &self.sql);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_with_transaction_header() {
        let mut b = vec![
            0x16, 0, 0, 0, 0x12, 0, 0, 0, 0x02, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0, 0,
        ];
        crate::wire::put_utf16(&mut b, "select 1 -- ü");
        let s = SqlBatch::decode(&b).unwrap();
        assert_eq!(s.headers.transaction_descriptor, Some(0x0807060504030201));
        assert_eq!(s.headers.outstanding_requests, Some(1));
        assert_eq!(s.sql, "select 1 -- ü");
        assert_eq!(SqlBatch::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn batch_without_headers() {
        let mut b = Vec::new();
        crate::wire::put_utf16(&mut b, "select 1");
        assert_eq!(SqlBatch::decode(&b).unwrap().sql, "select 1");
        assert!(SqlBatch::decode(&[0x41]).is_err());
    }
}
