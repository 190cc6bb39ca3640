//! Token stream encoders (server -> client).
use crate::types::{
    encode_column, encode_type_info, encode_value, Collation, Column, SqlType, SqlValue,
};
use crate::wire::{put_b_varchar, put_us_varchar, utf16_len};
use crate::EncodeError;

pub mod id {
    pub const COLMETADATA: u8 = 0x81;
    pub const ERROR: u8 = 0xAA;
    pub const INFO: u8 = 0xAB;
    pub const RETURNVALUE: u8 = 0xAC;
    pub const LOGINACK: u8 = 0xAD;
    pub const FEATUREEXTACK: u8 = 0xAE;
    pub const ORDER: u8 = 0xA9;
    pub const ROW: u8 = 0xD1;
    pub const NBCROW: u8 = 0xD2;
    pub const ENVCHANGE: u8 = 0xE3;
    pub const RETURNSTATUS: u8 = 0x79;
    pub const DONE: u8 = 0xFD;
    pub const DONEPROC: u8 = 0xFE;
    pub const DONEINPROC: u8 = 0xFF;
}

/// DONE status bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DoneStatus(pub u16);

impl DoneStatus {
    pub const FINAL: DoneStatus = DoneStatus(0);
    pub const MORE: u16 = 0x0001;
    pub const ERROR: u16 = 0x0002;
    pub const INXACT: u16 = 0x0004;
    pub const COUNT: u16 = 0x0010;
    pub const ATTN: u16 = 0x0020;
    pub const SRVERROR: u16 = 0x0100;
}

/// SQL Server's CurCmd values for the common statements.
pub mod cur_cmd {
    pub const NONE: u16 = 0;
    pub const SELECT: u16 = 0xC1;
    pub const INSERT: u16 = 0xC3;
    pub const DELETE: u16 = 0xC4;
    pub const UPDATE: u16 = 0xC5;
    pub const BEGIN_TRAN: u16 = 0xD4;
    pub const COMMIT_TRAN: u16 = 0xD5;
    pub const ROLLBACK_TRAN: u16 = 0xD6;
    pub const EXECUTE: u16 = 0xE0;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneKind {
    Done,
    DoneProc,
    DoneInProc,
}

/// DONE / DONEPROC / DONEINPROC. Row counts are u64 from TDS 7.2, u32 before.
pub fn done(out: &mut Vec<u8>, kind: DoneKind, status: u16, cur_cmd: u16, rows: u64, tds72: bool) {
    out.push(match kind {
        DoneKind::Done => id::DONE,
        DoneKind::DoneProc => id::DONEPROC,
        DoneKind::DoneInProc => id::DONEINPROC,
    });
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&cur_cmd.to_le_bytes());
    if tds72 {
        out.extend_from_slice(&rows.to_le_bytes());
    } else {
        out.extend_from_slice(&(rows.min(u32::MAX as u64) as u32).to_le_bytes());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvChange {
    Database {
        new: String,
        old: String,
    },
    Language {
        new: String,
        old: String,
    },
    PacketSize {
        new: u32,
        old: u32,
    },
    Collation {
        new: Collation,
        old: Option<Collation>,
    },
    BeginTransaction {
        descriptor: u64,
    },
    CommitTransaction {
        descriptor: u64,
    },
    RollbackTransaction {
        descriptor: u64,
    },
    ResetConnectionAck,
}

pub fn env_change(out: &mut Vec<u8>, e: &EnvChange) {
    let mut body = Vec::new();
    let bvarbyte = |body: &mut Vec<u8>, b: &[u8]| {
        body.push(b.len() as u8);
        body.extend_from_slice(b);
    };
    match e {
        EnvChange::Database { new, old } => {
            body.push(1);
            put_b_varchar(&mut body, new);
            put_b_varchar(&mut body, old);
        }
        EnvChange::Language { new, old } => {
            body.push(2);
            put_b_varchar(&mut body, new);
            put_b_varchar(&mut body, old);
        }
        EnvChange::PacketSize { new, old } => {
            body.push(4);
            put_b_varchar(&mut body, &new.to_string());
            put_b_varchar(&mut body, &old.to_string());
        }
        EnvChange::Collation { new, old } => {
            body.push(7);
            bvarbyte(&mut body, &new.encode());
            bvarbyte(
                &mut body,
                old.map(|c| c.encode()).as_ref().map_or(&[][..], |c| &c[..]),
            );
        }
        EnvChange::BeginTransaction { descriptor } => {
            body.push(8);
            bvarbyte(&mut body, &descriptor.to_le_bytes());
            bvarbyte(&mut body, &[]);
        }
        EnvChange::CommitTransaction { descriptor } => {
            body.push(9);
            bvarbyte(&mut body, &[]);
            bvarbyte(&mut body, &descriptor.to_le_bytes());
        }
        EnvChange::RollbackTransaction { descriptor } => {
            body.push(10);
            bvarbyte(&mut body, &[]);
            bvarbyte(&mut body, &descriptor.to_le_bytes());
        }
        EnvChange::ResetConnectionAck => {
            body.push(18);
            bvarbyte(&mut body, &[]);
            bvarbyte(&mut body, &[]);
        }
    }
    out.push(id::ENVCHANGE);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
}

/// An ERROR or INFO message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub number: i32,
    pub state: u8,
    /// Severity: <= 10 is INFO, above is ERROR.
    pub class: u8,
    pub text: String,
    pub server: String,
    pub procedure: String,
    pub line: u32,
}

impl Message {
    pub fn error(number: i32, class: u8, state: u8, text: impl Into<String>) -> Self {
        Message {
            number,
            state,
            class,
            text: text.into(),
            server: String::new(),
            procedure: String::new(),
            line: 1,
        }
    }
    pub fn info(number: i32, text: impl Into<String>) -> Self {
        Message {
            number,
            state: 1,
            class: 0,
            text: text.into(),
            server: String::new(),
            procedure: String::new(),
            line: 1,
        }
    }
    pub fn is_error(&self) -> bool {
        self.class > 10
    }
}

pub fn message(out: &mut Vec<u8>, m: &Message, tds72: bool) {
    let mut body = Vec::new();
    body.extend_from_slice(&m.number.to_le_bytes());
    body.push(m.state);
    body.push(m.class);
    // Message text is limited to a u16 character count; truncate rather than corrupt.
    let text: String = if utf16_len(&m.text) > 0xFFFF {
        m.text.chars().take(30000).collect()
    } else {
        m.text.clone()
    };
    put_us_varchar(&mut body, &text);
    put_b_varchar(&mut body, &m.server);
    put_b_varchar(&mut body, &m.procedure);
    if tds72 {
        body.extend_from_slice(&m.line.to_le_bytes());
    } else {
        body.extend_from_slice(&(m.line.min(u16::MAX as u32) as u16).to_le_bytes());
    }
    out.push(if m.is_error() { id::ERROR } else { id::INFO });
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
}

/// LOGINACK; `tds_version` in its big-endian LOGINACK form (e.g. 0x74000004).
pub fn login_ack(out: &mut Vec<u8>, tds_version: u32, prog_name: &str, prog_version: [u8; 4]) {
    let mut body = vec![1u8]; // interface: SQL_TSQL
    body.extend_from_slice(&tds_version.to_be_bytes());
    put_b_varchar(&mut body, prog_name);
    body.extend_from_slice(&prog_version);
    out.push(id::LOGINACK);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
}

/// FEATUREEXTACK with (id, data) entries.
pub fn feature_ext_ack(out: &mut Vec<u8>, features: &[(u8, Vec<u8>)]) {
    out.push(id::FEATUREEXTACK);
    for (fid, data) in features {
        out.push(*fid);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out.push(0xFF);
}

pub fn col_metadata(out: &mut Vec<u8>, cols: &[Column]) {
    out.push(id::COLMETADATA);
    out.extend_from_slice(&(cols.len().min(0xFFFE) as u16).to_le_bytes());
    for c in cols.iter().take(0xFFFE) {
        encode_column(c, out);
    }
}

/// ROW; on error nothing is appended.
pub fn row(out: &mut Vec<u8>, cols: &[Column], values: &[SqlValue]) -> Result<(), EncodeError> {
    if cols.len() != values.len() {
        return Err(EncodeError(format!(
            "{} values for {} columns",
            values.len(),
            cols.len()
        )));
    }
    let start = out.len();
    out.push(id::ROW);
    for (c, v) in cols.iter().zip(values) {
        if let Err(e) = encode_value(&c.ty, v, out) {
            out.truncate(start);
            return Err(e);
        }
    }
    Ok(())
}

/// NBCROW: NULLs cost one bit instead of a length prefix.
pub fn nbc_row(out: &mut Vec<u8>, cols: &[Column], values: &[SqlValue]) -> Result<(), EncodeError> {
    if cols.len() != values.len() {
        return Err(EncodeError(format!(
            "{} values for {} columns",
            values.len(),
            cols.len()
        )));
    }
    let start = out.len();
    out.push(id::NBCROW);
    let mut bitmap = vec![0u8; cols.len().div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        if matches!(v, SqlValue::Null) {
            bitmap[i / 8] |= 1 << (i % 8);
        }
    }
    out.extend_from_slice(&bitmap);
    for (c, v) in cols.iter().zip(values) {
        if matches!(v, SqlValue::Null) {
            continue;
        }
        if let Err(e) = encode_value(&c.ty, v, out) {
            out.truncate(start);
            return Err(e);
        }
    }
    Ok(())
}

pub fn return_status(out: &mut Vec<u8>, status: i32) {
    out.push(id::RETURNSTATUS);
    out.extend_from_slice(&status.to_le_bytes());
}

/// RETURNVALUE for an OUTPUT parameter (status 0x01) or UDF result (0x02).
pub fn return_value(
    out: &mut Vec<u8>,
    ordinal: u16,
    name: &str,
    ty: &SqlType,
    value: &SqlValue,
    udf: bool,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.push(id::RETURNVALUE);
    out.extend_from_slice(&ordinal.to_le_bytes());
    put_b_varchar(out, name);
    out.push(if udf { 0x02 } else { 0x01 });
    out.extend_from_slice(&0u32.to_le_bytes()); // UserType
    out.extend_from_slice(&0x0001u16.to_le_bytes()); // flags: nullable
    encode_type_info(ty, out);
    if let Err(e) = encode_value(ty, value, out) {
        out.truncate(start);
        return Err(e);
    }
    Ok(())
}

/// ORDER: 1-based column numbers of the ORDER BY.
pub fn order(out: &mut Vec<u8>, columns: &[u16]) {
    out.push(id::ORDER);
    out.extend_from_slice(&((columns.len() * 2) as u16).to_le_bytes());
    for c in columns {
        out.extend_from_slice(&c.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_bytes() {
        let mut b = Vec::new();
        done(
            &mut b,
            DoneKind::Done,
            DoneStatus::COUNT,
            cur_cmd::SELECT,
            3,
            true,
        );
        assert_eq!(b, [0xFD, 0x10, 0, 0xC1, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        let mut b = Vec::new();
        done(&mut b, DoneKind::DoneProc, 0, 0, 3, false);
        assert_eq!(b, [0xFE, 0, 0, 0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn envchange_bytes() {
        let mut b = Vec::new();
        env_change(
            &mut b,
            &EnvChange::PacketSize {
                new: 4096,
                old: 4096,
            },
        );
        assert_eq!(b[0], 0xE3);
        assert_eq!(u16::from_le_bytes([b[1], b[2]]) as usize, b.len() - 3);
        assert_eq!(b[3], 4);
        let mut b = Vec::new();
        env_change(
            &mut b,
            &EnvChange::BeginTransaction {
                descriptor: 0x0102030405060708,
            },
        );
        assert_eq!(b, [0xE3, 11, 0, 8, 8, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
        let mut b = Vec::new();
        env_change(
            &mut b,
            &EnvChange::Collation {
                new: Collation::default(),
                old: None,
            },
        );
        assert_eq!(b, [0xE3, 8, 0, 7, 5, 0x09, 0x04, 0xD0, 0x00, 0x34, 0]);
    }

    #[test]
    fn loginack_and_error_bytes() {
        let mut b = Vec::new();
        login_ack(&mut b, crate::version::V7_4, "M", [16, 0, 0x03, 0xE8]);
        assert_eq!(
            b,
            [0xAD, 12, 0, 1, 0x74, 0, 0, 4, 1, b'M', 0, 16, 0, 3, 0xE8]
        );
        let mut b = Vec::new();
        message(&mut b, &Message::error(18456, 14, 1, "x"), true);
        assert_eq!(b[0], id::ERROR);
        assert_eq!(&b[3..9], &[0x18, 0x48, 0, 0, 1, 14]);
        let mut b = Vec::new();
        message(&mut b, &Message::info(5701, "y"), true);
        assert_eq!(b[0], id::INFO);
    }

    #[test]
    fn rows() {
        let cols = vec![
            Column::new("a", SqlType::Int),
            Column::new("b", SqlType::NVarChar(Some(10))),
        ];
        let mut b = Vec::new();
        row(&mut b, &cols, &[SqlValue::Int(1), SqlValue::Null]).unwrap();
        assert_eq!(b, [0xD1, 4, 1, 0, 0, 0, 0xFF, 0xFF]);
        let mut b = Vec::new();
        nbc_row(&mut b, &cols, &[SqlValue::Int(1), SqlValue::Null]).unwrap();
        assert_eq!(b, [0xD2, 0b10, 4, 1, 0, 0, 0]);
        assert!(row(&mut b, &cols, &[SqlValue::Int(1)]).is_err());
        let before = b.len();
        assert!(row(
            &mut b,
            &cols,
            &[SqlValue::NVarChar("x".into()), SqlValue::Null]
        )
        .is_err());
        assert_eq!(b.len(), before);
    }
}
