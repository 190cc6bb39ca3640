//! PRELOGIN message (client request and server reply share the format).
use crate::wire::Reader;
use crate::DecodeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    Off,
    On,
    NotSupported,
    Required,
    /// TDS 8.0 strict, only seen inside TLS.
    Strict,
    Other(u8),
}

impl Encryption {
    pub fn from_u8(b: u8) -> Self {
        // High bit 0x80 (client certificate auth) is an add-on flag.
        match b & 0x7F {
            0 => Self::Off,
            1 => Self::On,
            2 => Self::NotSupported,
            3 => Self::Required,
            4 => Self::Strict,
            o => Self::Other(o),
        }
    }
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::On => 1,
            Self::NotSupported => 2,
            Self::Required => 3,
            Self::Strict => 4,
            Self::Other(o) => o,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreLogin {
    /// (major, minor, build, sub-build)
    pub version: Option<(u8, u8, u16, u16)>,
    pub encryption: Option<Encryption>,
    pub instance: Option<Vec<u8>>,
    pub thread_id: Option<u32>,
    pub mars: Option<u8>,
    pub trace_id: Option<Vec<u8>>,
    pub fed_auth_required: Option<u8>,
    pub nonce: Option<Vec<u8>>,
}

const OPT_VERSION: u8 = 0;
const OPT_ENCRYPTION: u8 = 1;
const OPT_INSTOPT: u8 = 2;
const OPT_THREADID: u8 = 3;
const OPT_MARS: u8 = 4;
const OPT_TRACEID: u8 = 5;
const OPT_FEDAUTH: u8 = 6;
const OPT_NONCE: u8 = 7;
const TERMINATOR: u8 = 0xFF;

impl PreLogin {
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let mut p = PreLogin::default();
        let mut count = 0;
        loop {
            let t = r.u8()?;
            if t == TERMINATOR {
                break;
            }
            count += 1;
            if count > 64 {
                return Err(DecodeError::Invalid("too many prelogin options"));
            }
            let off = r.u16_be()? as usize;
            let len = r.u16_be()? as usize;
            let data = b
                .get(off..off.checked_add(len).ok_or(DecodeError::Eof)?)
                .ok_or(DecodeError::Invalid("prelogin option out of range"))?;
            let mut d = Reader::new(data);
            match t {
                OPT_VERSION => {
                    let v = d.arr::<4>()?;
                    let sub = if d.remaining() >= 2 { d.u16_be()? } else { 0 };
                    p.version = Some((v[0], v[1], u16::from_be_bytes([v[2], v[3]]), sub));
                }
                OPT_ENCRYPTION => p.encryption = Some(Encryption::from_u8(d.u8()?)),
                OPT_INSTOPT => p.instance = Some(data.to_vec()),
                OPT_THREADID => {
                    p.thread_id = if data.len() >= 4 {
                        Some(d.u32_be()?)
                    } else {
                        None
                    }
                }
                OPT_MARS => p.mars = Some(d.u8()?),
                OPT_TRACEID => p.trace_id = Some(data.to_vec()),
                OPT_FEDAUTH => p.fed_auth_required = Some(d.u8()?),
                OPT_NONCE => p.nonce = Some(data.to_vec()),
                _ => {} // unknown options are tolerated
            }
        }
        Ok(p)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut opts: Vec<(u8, Vec<u8>)> = Vec::new();
        if let Some((a, b, c, d)) = self.version {
            let mut v = vec![a, b];
            v.extend_from_slice(&c.to_be_bytes());
            v.extend_from_slice(&d.to_be_bytes());
            opts.push((OPT_VERSION, v));
        }
        if let Some(e) = self.encryption {
            opts.push((OPT_ENCRYPTION, vec![e.to_u8()]));
        }
        if let Some(i) = &self.instance {
            opts.push((OPT_INSTOPT, i.clone()));
        }
        if let Some(t) = self.thread_id {
            opts.push((OPT_THREADID, t.to_be_bytes().to_vec()));
        }
        if let Some(m) = self.mars {
            opts.push((OPT_MARS, vec![m]));
        }
        if let Some(t) = &self.trace_id {
            opts.push((OPT_TRACEID, t.clone()));
        }
        if let Some(f) = self.fed_auth_required {
            opts.push((OPT_FEDAUTH, vec![f]));
        }
        if let Some(n) = &self.nonce {
            opts.push((OPT_NONCE, n.clone()));
        }
        let mut out = Vec::new();
        let mut off = opts.len() * 5 + 1;
        for (t, d) in &opts {
            out.push(*t);
            out.extend_from_slice(&(off as u16).to_be_bytes());
            out.extend_from_slice(&(d.len() as u16).to_be_bytes());
            off += d.len();
        }
        out.push(TERMINATOR);
        for (_, d) in opts {
            out.extend_from_slice(&d);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_freetds_like_request() {
        // VERSION, ENCRYPTION(OFF), INSTOPT "MSSQLServer\0", THREADID, MARS
        let mut b = vec![
            0x00, 0x00, 0x1A, 0x00, 0x06, 0x01, 0x00, 0x20, 0x00, 0x01, 0x02, 0x00, 0x21, 0x00,
            0x0C, 0x03, 0x00, 0x2D, 0x00, 0x04, 0x04, 0x00, 0x31, 0x00, 0x01, 0xFF,
        ];
        b.extend_from_slice(&[0x08, 0x00, 0x01, 0x55, 0x00, 0x00]);
        b.push(0x00);
        b.extend_from_slice(b"MSSQLServer\0");
        b.extend_from_slice(&[0, 0, 0x12, 0x34]);
        b.push(0);
        let p = PreLogin::decode(&b).unwrap();
        assert_eq!(p.version, Some((8, 0, 0x155, 0)));
        assert_eq!(p.encryption, Some(Encryption::Off));
        assert_eq!(p.instance.as_deref(), Some(&b"MSSQLServer\0"[..]));
        assert_eq!(p.thread_id, Some(0x1234));
        assert_eq!(p.mars, Some(0));
    }

    #[test]
    fn round_trip() {
        let p = PreLogin {
            version: Some((16, 0, 1000, 0)),
            encryption: Some(Encryption::On),
            instance: Some(vec![0]),
            thread_id: Some(0),
            mars: Some(0),
            fed_auth_required: Some(0),
            ..Default::default()
        };
        assert_eq!(PreLogin::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn bad_offsets() {
        assert!(PreLogin::decode(&[0x01, 0x00, 0x50, 0x00, 0x01, 0xFF]).is_err());
        assert!(PreLogin::decode(&[]).is_err());
        assert!(PreLogin::decode(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
    }
}
