//! Transaction Manager requests (packet type 0x0E).
use crate::batch::AllHeaders;
use crate::wire::Reader;
use crate::DecodeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    NoChange,
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
    Snapshot,
}

impl IsolationLevel {
    fn from_u8(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0 => Self::NoChange,
            1 => Self::ReadUncommitted,
            2 => Self::ReadCommitted,
            3 => Self::RepeatableRead,
            4 => Self::Serializable,
            5 => Self::Snapshot,
            _ => return Err(DecodeError::Invalid("isolation level")),
        })
    }
    fn to_u8(self) -> u8 {
        match self {
            Self::NoChange => 0,
            Self::ReadUncommitted => 1,
            Self::ReadCommitted => 2,
            Self::RepeatableRead => 3,
            Self::Serializable => 4,
            Self::Snapshot => 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TmRequest {
    GetDtcAddress,
    PropagateXact(Vec<u8>),
    Begin {
        isolation: IsolationLevel,
        name: String,
    },
    Promote,
    /// `then_begin`: start a new transaction right after (fBeginXact).
    Commit {
        name: String,
        then_begin: Option<(IsolationLevel, String)>,
    },
    Rollback {
        name: String,
        then_begin: Option<(IsolationLevel, String)>,
    },
    Save {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmMessage {
    pub headers: AllHeaders,
    pub request: TmRequest,
}

impl TmMessage {
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let headers = AllHeaders::decode_optional(&mut r, b)?;
        let ty = r.u16_le()?;
        let then_begin =
            |r: &mut Reader<'_>| -> Result<Option<(IsolationLevel, String)>, DecodeError> {
                if r.is_empty() {
                    return Ok(None);
                }
                let flags = r.u8()?;
                if flags & 1 == 0 {
                    return Ok(None);
                }
                let iso = IsolationLevel::from_u8(r.u8()?)?;
                let name = if r.is_empty() {
                    String::new()
                } else {
                    r.b_varchar()?
                };
                Ok(Some((iso, name)))
            };
        let request = match ty {
            0 => TmRequest::GetDtcAddress,
            1 => {
                let n = r.u16_le()? as usize;
                TmRequest::PropagateXact(r.take(n)?.to_vec())
            }
            5 => {
                let isolation = IsolationLevel::from_u8(r.u8()?)?;
                let name = if r.is_empty() {
                    String::new()
                } else {
                    r.b_varchar()?
                };
                TmRequest::Begin { isolation, name }
            }
            6 => TmRequest::Promote,
            7 | 8 => {
                let name = if r.is_empty() {
                    String::new()
                } else {
                    r.b_varchar()?
                };
                let tb = then_begin(&mut r)?;
                if ty == 7 {
                    TmRequest::Commit {
                        name,
                        then_begin: tb,
                    }
                } else {
                    TmRequest::Rollback {
                        name,
                        then_begin: tb,
                    }
                }
            }
            9 => TmRequest::Save {
                name: r.b_varchar()?,
            },
            _ => return Err(DecodeError::Unsupported(format!("TM request {ty}"))),
        };
        Ok(TmMessage { headers, request })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.headers.encode();
        let tb = |out: &mut Vec<u8>, t: &Option<(IsolationLevel, String)>| match t {
            None => out.push(0),
            Some((i, n)) => {
                out.push(1);
                out.push(i.to_u8());
                crate::wire::put_b_varchar(out, n);
            }
        };
        match &self.request {
            TmRequest::GetDtcAddress => out.extend_from_slice(&0u16.to_le_bytes()),
            TmRequest::PropagateXact(d) => {
                out.extend_from_slice(&1u16.to_le_bytes());
                out.extend_from_slice(&(d.len() as u16).to_le_bytes());
                out.extend_from_slice(d);
            }
            TmRequest::Begin { isolation, name } => {
                out.extend_from_slice(&5u16.to_le_bytes());
                out.push(isolation.to_u8());
                crate::wire::put_b_varchar(&mut out, name);
            }
            TmRequest::Promote => out.extend_from_slice(&6u16.to_le_bytes()),
            TmRequest::Commit { name, then_begin } => {
                out.extend_from_slice(&7u16.to_le_bytes());
                crate::wire::put_b_varchar(&mut out, name);
                tb(&mut out, then_begin);
            }
            TmRequest::Rollback { name, then_begin } => {
                out.extend_from_slice(&8u16.to_le_bytes());
                crate::wire::put_b_varchar(&mut out, name);
                tb(&mut out, then_begin);
            }
            TmRequest::Save { name } => {
                out.extend_from_slice(&9u16.to_le_bytes());
                crate::wire::put_b_varchar(&mut out, name);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let hs = AllHeaders {
            transaction_descriptor: Some(0),
            outstanding_requests: Some(1),
            ..Default::default()
        };
        for request in [
            TmRequest::Begin {
                isolation: IsolationLevel::ReadCommitted,
                name: "t1".into(),
            },
            TmRequest::Commit {
                name: String::new(),
                then_begin: None,
            },
            TmRequest::Rollback {
                name: String::new(),
                then_begin: Some((IsolationLevel::Serializable, "x".into())),
            },
            TmRequest::Save { name: "sp".into() },
            TmRequest::GetDtcAddress,
        ] {
            let m = TmMessage {
                headers: hs.clone(),
                request,
            };
            assert_eq!(TmMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn python_tds_begin() {
        // ALL_HEADERS(22) + TM_BEGIN_XACT + isolation 0 + empty name
        let mut b = AllHeaders {
            transaction_descriptor: Some(0),
            outstanding_requests: Some(1),
            ..Default::default()
        }
        .encode();
        b.extend_from_slice(&[5, 0, 0, 0]);
        let m = TmMessage::decode(&b).unwrap();
        assert_eq!(
            m.request,
            TmRequest::Begin {
                isolation: IsolationLevel::NoChange,
                name: String::new()
            }
        );
    }
}
