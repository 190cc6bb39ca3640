//! RPC requests: one message may carry several calls separated by batch flags.
use crate::batch::AllHeaders;
use crate::types::{encode_type_info, encode_value, SqlType, SqlValue, TypeInfo};
use crate::wire::{put_b_varchar, Reader};
use crate::DecodeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcId {
    Cursor,
    CursorOpen,
    CursorPrepare,
    CursorExecute,
    CursorPrepExec,
    CursorUnprepare,
    CursorFetch,
    CursorOption,
    CursorClose,
    ExecuteSql,
    Prepare,
    Execute,
    PrepExec,
    PrepExecRpc,
    Unprepare,
    Other(u16),
}

impl ProcId {
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => Self::Cursor,
            2 => Self::CursorOpen,
            3 => Self::CursorPrepare,
            4 => Self::CursorExecute,
            5 => Self::CursorPrepExec,
            6 => Self::CursorUnprepare,
            7 => Self::CursorFetch,
            8 => Self::CursorOption,
            9 => Self::CursorClose,
            10 => Self::ExecuteSql,
            11 => Self::Prepare,
            12 => Self::Execute,
            13 => Self::PrepExec,
            14 => Self::PrepExecRpc,
            15 => Self::Unprepare,
            o => Self::Other(o),
        }
    }
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Cursor => 1,
            Self::CursorOpen => 2,
            Self::CursorPrepare => 3,
            Self::CursorExecute => 4,
            Self::CursorPrepExec => 5,
            Self::CursorUnprepare => 6,
            Self::CursorFetch => 7,
            Self::CursorOption => 8,
            Self::CursorClose => 9,
            Self::ExecuteSql => 10,
            Self::Prepare => 11,
            Self::Execute => 12,
            Self::PrepExec => 13,
            Self::PrepExecRpc => 14,
            Self::Unprepare => 15,
            Self::Other(o) => o,
        }
    }
    /// The system procedure name, e.g. for a name-based call to map back to an id.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name
            .trim_start_matches("sys.")
            .trim_start_matches("dbo.")
            .to_ascii_lowercase();
        Some(match n.as_str() {
            "sp_executesql" => Self::ExecuteSql,
            "sp_prepare" => Self::Prepare,
            "sp_execute" => Self::Execute,
            "sp_prepexec" => Self::PrepExec,
            "sp_unprepare" => Self::Unprepare,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcTarget {
    Id(ProcId),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcParam {
    /// With '@', or empty for positional parameters.
    pub name: String,
    /// fByRefValue: an OUTPUT parameter.
    pub output: bool,
    pub default_value: bool,
    pub ty: SqlType,
    pub value: SqlValue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcRequest {
    pub target: RpcTarget,
    pub option_flags: u16,
    pub params: Vec<RpcParam>,
}

impl RpcRequest {
    /// The procedure id, also for well-known procedures called by name.
    pub fn proc_id(&self) -> Option<ProcId> {
        match &self.target {
            RpcTarget::Id(i) => Some(*i),
            RpcTarget::Name(n) => ProcId::from_name(n),
        }
    }
    pub fn with_recompile(&self) -> bool {
        self.option_flags & 1 != 0
    }
    pub fn no_metadata(&self) -> bool {
        self.option_flags & 2 != 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcMessage {
    pub headers: AllHeaders,
    pub requests: Vec<RpcRequest>,
}

const BATCH_FLAG: u8 = 0xFF;
const NO_EXEC_FLAG: u8 = 0xFE;
const BATCH_FLAG_OLD: u8 = 0x80;

impl RpcMessage {
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let headers = AllHeaders::decode_optional(&mut r, b)?;
        let mut requests = Vec::new();
        loop {
            requests.push(decode_request(&mut r)?);
            match r.peek_u8() {
                None => break,
                Some(BATCH_FLAG | NO_EXEC_FLAG | BATCH_FLAG_OLD) => {
                    r.u8()?;
                    // A trailing separator with nothing after it is tolerated.
                    if r.is_empty() {
                        break;
                    }
                }
                Some(_) => return Err(DecodeError::Invalid("junk after RPC parameters")),
            }
        }
        Ok(RpcMessage { headers, requests })
    }

    pub fn encode(&self) -> Result<Vec<u8>, crate::EncodeError> {
        let mut out = self.headers.encode();
        for (i, req) in self.requests.iter().enumerate() {
            if i > 0 {
                out.push(BATCH_FLAG);
            }
            match &req.target {
                RpcTarget::Id(id) => {
                    out.extend_from_slice(&0xFFFFu16.to_le_bytes());
                    out.extend_from_slice(&id.to_u16().to_le_bytes());
                }
                RpcTarget::Name(n) => {
                    let units: Vec<u16> = n.encode_utf16().collect();
                    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
                    units
                        .iter()
                        .for_each(|u| out.extend_from_slice(&u.to_le_bytes()));
                }
            }
            out.extend_from_slice(&req.option_flags.to_le_bytes());
            for p in &req.params {
                put_b_varchar(&mut out, &p.name);
                out.push(p.output as u8 | (p.default_value as u8) << 1);
                encode_type_info(&p.ty, &mut out);
                encode_value(&p.ty, &p.value, &mut out)?;
            }
        }
        Ok(out)
    }
}

fn decode_request(r: &mut Reader<'_>) -> Result<RpcRequest, DecodeError> {
    let name_len = r.u16_le()?;
    let target = if name_len == 0xFFFF {
        RpcTarget::Id(ProcId::from_u16(r.u16_le()?))
    } else {
        RpcTarget::Name(r.ucs2(name_len as usize)?)
    };
    let option_flags = r.u16_le()?;
    let mut params = Vec::new();
    while let Some(b) = r.peek_u8() {
        if matches!(b, BATCH_FLAG | NO_EXEC_FLAG | BATCH_FLAG_OLD) {
            break;
        }
        let name = r.b_varchar()?;
        let status = r.u8()?;
        if status & 0x08 != 0 {
            return Err(DecodeError::Unsupported("encrypted parameters".into()));
        }
        let ti = TypeInfo::decode(r)?;
        let value = ti.decode_value(r)?;
        params.push(RpcParam {
            name,
            output: status & 0x01 != 0,
            default_value: status & 0x02 != 0,
            ty: ti.ty,
            value,
        });
    }
    Ok(RpcRequest {
        target,
        option_flags,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, ty: SqlType, value: SqlValue) -> RpcParam {
        RpcParam {
            name: name.into(),
            output: false,
            default_value: false,
            ty,
            value,
        }
    }

    #[test]
    fn executesql_round_trip_and_multiple_calls() {
        let m = RpcMessage {
            headers: AllHeaders {
                transaction_descriptor: Some(0),
                outstanding_requests: Some(1),
                ..Default::default()
            },
            requests: vec![
                RpcRequest {
                    target: RpcTarget::Id(ProcId::ExecuteSql),
                    option_flags: 0,
                    params: vec![
                        p(
                            "",
                            SqlType::NVarChar(None),
                            SqlValue::NVarChar("select @P1".into()),
                        ),
                        p(
                            "",
                            SqlType::NVarChar(Some(4000)),
                            SqlValue::NVarChar("@P1 int".into()),
                        ),
                        p("@P1", SqlType::Int, SqlValue::Int(42)),
                    ],
                },
                RpcRequest {
                    target: RpcTarget::Name("dbo.my_proc".into()),
                    option_flags: 2,
                    params: vec![RpcParam {
                        output: true,
                        ..p("@out", SqlType::BigInt, SqlValue::Null)
                    }],
                },
            ],
        };
        let b = m.encode().unwrap();
        let d = RpcMessage::decode(&b).unwrap();
        assert_eq!(d, m);
        assert_eq!(d.requests[0].proc_id(), Some(ProcId::ExecuteSql));
        assert_eq!(d.requests[1].proc_id(), None);
        assert!(d.requests[1].no_metadata());
    }

    #[test]
    fn known_bytes_unnamed_int() {
        // no ALL_HEADERS (7.1 style), ProcID 12 sp_execute, handle int 1 unnamed
        let b = [0xFF, 0xFF, 12, 0, 0, 0, 0, 0, 0x26, 4, 4, 1, 0, 0, 0];
        let d = RpcMessage::decode(&b).unwrap();
        assert_eq!(d.requests[0].proc_id(), Some(ProcId::Execute));
        assert_eq!(d.requests[0].params[0].value, SqlValue::Int(1));
    }

    #[test]
    fn truncations_error() {
        let m = RpcMessage {
            headers: AllHeaders::default(),
            requests: vec![RpcRequest {
                target: RpcTarget::Id(ProcId::ExecuteSql),
                option_flags: 0,
                params: vec![p(
                    "",
                    SqlType::NVarChar(None),
                    SqlValue::NVarChar("select 1".into()),
                )],
            }],
        };
        let b = m.encode().unwrap();
        for n in 5..b.len() {
            let _ = RpcMessage::decode(&b[..n]);
        }
    }
}
