//! Value model and TYPE_INFO / value codecs shared by RPC parameters (decode) and
//! result sets / return values (encode).
use crate::wire::{put_b_varchar, put_utf16, utf16le_to_string, Reader};
use crate::{DecodeError, EncodeError};

/// 5-byte TDS collation: LCID + flags + version in a little-endian u32, then sort id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collation {
    pub info: u32,
    pub sort_id: u8,
}

impl Collation {
    /// SQL_Latin1_General_CP1_CI_AS: LCID 0x0409, ignore case/kana/width, sort id 52.
    pub const SQL_LATIN1_GENERAL_CP1_CI_AS: Collation = Collation {
        info: 0x00D0_0409,
        sort_id: 52,
    };
    pub fn encode(&self) -> [u8; 5] {
        let i = self.info.to_le_bytes();
        [i[0], i[1], i[2], i[3], self.sort_id]
    }
    pub fn decode(b: [u8; 5]) -> Self {
        Collation {
            info: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            sort_id: b[4],
        }
    }
    pub fn lcid(&self) -> u32 {
        self.info & 0x000F_FFFF
    }
    /// UTF-8 collations (SQL Server 2019+) flag bit.
    pub fn is_utf8(&self) -> bool {
        self.info & 0x0400_0000 != 0
    }
}

impl Default for Collation {
    fn default() -> Self {
        Self::SQL_LATIN1_GENERAL_CP1_CI_AS
    }
}

/// Column / parameter type. String lengths: `None` means (MAX), sent as PLP.
/// `NVarChar`/`NChar` lengths count UTF-16 code units, the others bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Real,
    Float,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Money,
    SmallMoney,
    NVarChar(Option<u16>),
    NChar(u16),
    VarChar(Option<u16>),
    Char(u16),
    VarBinary(Option<u16>),
    Binary(u16),
    Guid,
    Date,
    Time {
        scale: u8,
    },
    DateTime,
    SmallDateTime,
    DateTime2 {
        scale: u8,
    },
    DateTimeOffset {
        scale: u8,
    },
    /// Legacy LOB types, accepted in parameters only.
    Text,
    NText,
    Image,
    Xml,
}

/// Exact decimal: `value / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub value: i128,
    pub precision: u8,
    pub scale: u8,
}

/// Days since 0001-01-01 (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub i32);

/// 100-nanosecond ticks since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime2 {
    pub date: Date,
    pub time: Time,
}

/// `local` is the local wall-clock time; on the wire SQL Server carries UTC + offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTimeOffset {
    pub local: DateTime2,
    pub offset_minutes: i16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Bit(bool),
    TinyInt(u8),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    Real(f32),
    Float(f64),
    Decimal(Decimal),
    /// Ten-thousandths of a currency unit (MONEY and SMALLMONEY).
    Money(i64),
    NVarChar(String),
    VarChar(String),
    VarBinary(Vec<u8>),
    /// Canonical (string) byte order: 00112233-4455-6677-8899-AABBCCDDEEFF.
    Guid([u8; 16]),
    Date(Date),
    Time(Time),
    /// DATETIME / SMALLDATETIME (rounded to their precision when encoded).
    DateTime(DateTime2),
    DateTime2(DateTime2),
    DateTimeOffset(DateTimeOffset),
}

const TICKS_PER_DAY: u64 = 864_000_000_000;
/// Days from 0001-01-01 to 1900-01-01.
const DAYS_TO_1900: i32 = 693_595;

impl Date {
    pub fn from_ymd(y: i32, m: u32, d: u32) -> Option<Date> {
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        // Howard Hinnant's days_from_civil, shifted to 0001-01-01.
        let y = if m <= 2 { y - 1 } else { y } as i64;
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = m as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days_from_1970 = era * 146_097 + doe - 719_468;
        i32::try_from(days_from_1970 + 719_162).ok().map(Date)
    }
    pub fn to_ymd(self) -> (i32, u32, u32) {
        let z = self.0 as i64 - 719_162 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
    }
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

impl Time {
    pub fn from_hms_nano(h: u32, m: u32, s: u32, nano: u32) -> Option<Time> {
        if h > 23 || m > 59 || s > 59 || nano > 999_999_999 {
            return None;
        }
        Some(Time(
            (h as u64 * 3600 + m as u64 * 60 + s as u64) * 10_000_000 + nano as u64 / 100,
        ))
    }
    pub fn to_hms_nano(self) -> (u32, u32, u32, u32) {
        let secs = self.0 / 10_000_000;
        (
            (secs / 3600) as u32,
            (secs / 60 % 60) as u32,
            (secs % 60) as u32,
            (self.0 % 10_000_000 * 100) as u32,
        )
    }
}

impl DateTime2 {
    fn add_minutes(self, minutes: i64) -> DateTime2 {
        let total = self.date.0 as i128 * TICKS_PER_DAY as i128
            + self.time.0 as i128
            + minutes as i128 * 600_000_000;
        let days = total.div_euclid(TICKS_PER_DAY as i128);
        let ticks = total.rem_euclid(TICKS_PER_DAY as i128);
        DateTime2 {
            date: Date(days as i32),
            time: Time(ticks as u64),
        }
    }
}

// ---------------------------------------------------------------- wire type ids
pub(crate) mod id {
    pub const NULL: u8 = 0x1F;
    pub const INT1: u8 = 0x30;
    pub const BIT: u8 = 0x32;
    pub const INT2: u8 = 0x34;
    pub const INT4: u8 = 0x38;
    pub const DATETIM4: u8 = 0x3A;
    pub const FLT4: u8 = 0x3B;
    pub const MONEY: u8 = 0x3C;
    pub const DATETIME: u8 = 0x3D;
    pub const FLT8: u8 = 0x3E;
    pub const MONEY4: u8 = 0x7A;
    pub const INT8: u8 = 0x7F;
    pub const GUID: u8 = 0x24;
    pub const INTN: u8 = 0x26;
    pub const DECIMAL: u8 = 0x37;
    pub const NUMERIC: u8 = 0x3F;
    pub const BITN: u8 = 0x68;
    pub const DECIMALN: u8 = 0x6A;
    pub const NUMERICN: u8 = 0x6C;
    pub const FLTN: u8 = 0x6D;
    pub const MONEYN: u8 = 0x6E;
    pub const DATETIMN: u8 = 0x6F;
    pub const DATEN: u8 = 0x28;
    pub const TIMEN: u8 = 0x29;
    pub const DATETIME2N: u8 = 0x2A;
    pub const DATETIMEOFFSETN: u8 = 0x2B;
    pub const CHAR: u8 = 0x2F;
    pub const VARCHAR: u8 = 0x27;
    pub const BINARY: u8 = 0x2D;
    pub const VARBINARY: u8 = 0x25;
    pub const BIGVARBIN: u8 = 0xA5;
    pub const BIGVARCHR: u8 = 0xA7;
    pub const BIGBINARY: u8 = 0xAD;
    pub const BIGCHAR: u8 = 0xAF;
    pub const NVARCHAR: u8 = 0xE7;
    pub const NCHAR: u8 = 0xEF;
    pub const XML: u8 = 0xF1;
    pub const TEXT: u8 = 0x23;
    pub const IMAGE: u8 = 0x22;
    pub const NTEXT: u8 = 0x63;
}

/// TYPE_INFO as decoded, keeping the wire details needed to read the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    pub ty: SqlType,
    pub wire_id: u8,
    /// Declared wire length (bytes) for length-prefixed types; 0xFFFF for PLP.
    pub wire_len: u32,
    pub collation: Option<Collation>,
}

fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

fn time_len(scale: u8) -> usize {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

impl TypeInfo {
    /// Decodes TYPE_INFO as found in RPC parameters and COLMETADATA (without the
    /// COLMETADATA-only table name of TEXT/NTEXT/IMAGE).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<TypeInfo, DecodeError> {
        let wid = r.u8()?;
        let fixed = |ty, len| {
            Ok(TypeInfo {
                ty,
                wire_id: wid,
                wire_len: len,
                collation: None,
            })
        };
        match wid {
            id::NULL => fixed(SqlType::Int, 0),
            id::INT1 => fixed(SqlType::TinyInt, 1),
            id::BIT => fixed(SqlType::Bit, 1),
            id::INT2 => fixed(SqlType::SmallInt, 2),
            id::INT4 => fixed(SqlType::Int, 4),
            id::INT8 => fixed(SqlType::BigInt, 8),
            id::FLT4 => fixed(SqlType::Real, 4),
            id::FLT8 => fixed(SqlType::Float, 8),
            id::MONEY => fixed(SqlType::Money, 8),
            id::MONEY4 => fixed(SqlType::SmallMoney, 4),
            id::DATETIME => fixed(SqlType::DateTime, 8),
            id::DATETIM4 => fixed(SqlType::SmallDateTime, 4),
            id::INTN => {
                let l = r.u8()?;
                let ty = match l {
                    1 => SqlType::TinyInt,
                    2 => SqlType::SmallInt,
                    4 => SqlType::Int,
                    8 => SqlType::BigInt,
                    _ => return Err(DecodeError::Invalid("INTN length")),
                };
                fixed(ty, l as u32)
            }
            id::BITN => {
                let l = r.u8()?;
                if l != 1 {
                    return Err(DecodeError::Invalid("BITN length"));
                }
                fixed(SqlType::Bit, 1)
            }
            id::FLTN => {
                let l = r.u8()?;
                let ty = match l {
                    4 => SqlType::Real,
                    8 => SqlType::Float,
                    _ => return Err(DecodeError::Invalid("FLTN length")),
                };
                fixed(ty, l as u32)
            }
            id::MONEYN => {
                let l = r.u8()?;
                let ty = match l {
                    4 => SqlType::SmallMoney,
                    8 => SqlType::Money,
                    _ => return Err(DecodeError::Invalid("MONEYN length")),
                };
                fixed(ty, l as u32)
            }
            id::DATETIMN => {
                let l = r.u8()?;
                let ty = match l {
                    4 => SqlType::SmallDateTime,
                    8 => SqlType::DateTime,
                    _ => return Err(DecodeError::Invalid("DATETIMN length")),
                };
                fixed(ty, l as u32)
            }
            id::GUID => {
                let l = r.u8()?;
                if l != 16 && l != 0 {
                    return Err(DecodeError::Invalid("GUID length"));
                }
                fixed(SqlType::Guid, 16)
            }
            id::DECIMAL | id::NUMERIC | id::DECIMALN | id::NUMERICN => {
                let l = r.u8()?;
                let precision = r.u8()?;
                let scale = r.u8()?;
                if !(1..=38).contains(&precision) || scale > precision || l > 17 {
                    return Err(DecodeError::Invalid("decimal precision/scale"));
                }
                fixed(SqlType::Decimal { precision, scale }, l as u32)
            }
            id::DATEN => fixed(SqlType::Date, 3),
            id::TIMEN | id::DATETIME2N | id::DATETIMEOFFSETN => {
                let scale = r.u8()?;
                if scale > 7 {
                    return Err(DecodeError::Invalid("time scale"));
                }
                let tl = time_len(scale) as u32;
                let (ty, len) = match wid {
                    id::TIMEN => (SqlType::Time { scale }, tl),
                    id::DATETIME2N => (SqlType::DateTime2 { scale }, tl + 3),
                    _ => (SqlType::DateTimeOffset { scale }, tl + 5),
                };
                fixed(ty, len)
            }
            id::CHAR | id::VARCHAR | id::BINARY | id::VARBINARY => {
                let l = r.u8()?;
                let (ty, coll) = match wid {
                    id::CHAR | id::VARCHAR => {
                        // Pre-7.0 types carry no collation.
                        (SqlType::VarChar(Some(l as u16)), None)
                    }
                    _ => (SqlType::VarBinary(Some(l as u16)), None),
                };
                Ok(TypeInfo {
                    ty,
                    wire_id: wid,
                    wire_len: l as u32,
                    collation: coll,
                })
            }
            id::BIGVARBIN | id::BIGBINARY => {
                let l = r.u16_le()?;
                let ty = match (wid, l) {
                    (id::BIGVARBIN, 0xFFFF) => SqlType::VarBinary(None),
                    (id::BIGVARBIN, l) => SqlType::VarBinary(Some(l)),
                    (_, 0xFFFF) => return Err(DecodeError::Invalid("BINARY(MAX)")),
                    (_, l) => SqlType::Binary(l),
                };
                Ok(TypeInfo {
                    ty,
                    wire_id: wid,
                    wire_len: l as u32,
                    collation: None,
                })
            }
            id::BIGVARCHR | id::BIGCHAR | id::NVARCHAR | id::NCHAR => {
                let l = r.u16_le()?;
                let coll = Collation::decode(r.arr()?);
                let ty = match (wid, l) {
                    (id::BIGVARCHR, 0xFFFF) => SqlType::VarChar(None),
                    (id::BIGVARCHR, l) => SqlType::VarChar(Some(l)),
                    (id::BIGCHAR, 0xFFFF) | (id::NCHAR, 0xFFFF) => {
                        return Err(DecodeError::Invalid("CHAR(MAX)"))
                    }
                    (id::BIGCHAR, l) => SqlType::Char(l),
                    (id::NVARCHAR, 0xFFFF) => SqlType::NVarChar(None),
                    (id::NVARCHAR, l) => SqlType::NVarChar(Some(l / 2)),
                    (_, l) => SqlType::NChar(l / 2),
                };
                Ok(TypeInfo {
                    ty,
                    wire_id: wid,
                    wire_len: l as u32,
                    collation: Some(coll),
                })
            }
            id::XML => {
                let schema_present = r.u8()?;
                if schema_present != 0 {
                    r.b_varchar()?; // db name
                    r.b_varchar()?; // owning schema
                    r.us_varchar()?; // schema collection
                }
                Ok(TypeInfo {
                    ty: SqlType::Xml,
                    wire_id: wid,
                    wire_len: 0xFFFF,
                    collation: None,
                })
            }
            id::TEXT | id::NTEXT | id::IMAGE => {
                let l = r.u32_le()?;
                let coll = if wid == id::IMAGE {
                    None
                } else {
                    Some(Collation::decode(r.arr()?))
                };
                let ty = match wid {
                    id::TEXT => SqlType::Text,
                    id::NTEXT => SqlType::NText,
                    _ => SqlType::Image,
                };
                Ok(TypeInfo {
                    ty,
                    wire_id: wid,
                    wire_len: l,
                    collation: coll,
                })
            }
            other => Err(DecodeError::Unsupported(format!("type 0x{other:02X}"))),
        }
    }

    /// Decodes one value of this type as sent in RPC parameters.
    pub(crate) fn decode_value(&self, r: &mut Reader<'_>) -> Result<SqlValue, DecodeError> {
        match self.wire_id {
            id::NULL => Ok(SqlValue::Null),
            id::INT1
            | id::BIT
            | id::INT2
            | id::INT4
            | id::INT8
            | id::FLT4
            | id::FLT8
            | id::MONEY
            | id::MONEY4
            | id::DATETIME
            | id::DATETIM4 => {
                let b = r.take(self.wire_len as usize)?;
                decode_fixed(&self.ty, b)
            }
            id::INTN
            | id::BITN
            | id::FLTN
            | id::MONEYN
            | id::DATETIMN
            | id::GUID
            | id::DECIMAL
            | id::NUMERIC
            | id::DECIMALN
            | id::NUMERICN
            | id::DATEN
            | id::TIMEN
            | id::DATETIME2N
            | id::DATETIMEOFFSETN => {
                let l = r.u8()? as usize;
                if l == 0 {
                    return Ok(SqlValue::Null);
                }
                let b = r.take(l)?;
                decode_fixed(&self.ty, b)
            }
            id::CHAR | id::VARCHAR | id::BINARY | id::VARBINARY => {
                let l = r.u8()?;
                // Legacy types use 0xFF as NULL; 0 is an empty value.
                if l == 0xFF {
                    return Ok(SqlValue::Null);
                }
                let b = r.take(l as usize)?;
                Ok(self.bytes_to_value(b.to_vec()))
            }
            id::XML => match read_plp(r)? {
                None => Ok(SqlValue::Null),
                Some(b) => Ok(SqlValue::NVarChar(utf16le_to_string(&b))),
            },
            id::TEXT | id::NTEXT | id::IMAGE => {
                // RPC parameter form: a 4-byte length (0xFFFFFFFF = NULL), no text pointer.
                let l = r.u32_le()?;
                if l == 0xFFFF_FFFF {
                    return Ok(SqlValue::Null);
                }
                let b = r.take(l as usize)?;
                Ok(self.bytes_to_value(b.to_vec()))
            }
            _ => {
                // USHORTLEN: BIG*/N* types, or PLP for (MAX).
                if self.wire_len == 0xFFFF {
                    match read_plp(r)? {
                        None => Ok(SqlValue::Null),
                        Some(b) => Ok(self.bytes_to_value(b)),
                    }
                } else {
                    let l = r.u16_le()?;
                    if l == 0xFFFF {
                        return Ok(SqlValue::Null);
                    }
                    let b = r.take(l as usize)?;
                    Ok(self.bytes_to_value(b.to_vec()))
                }
            }
        }
    }

    fn bytes_to_value(&self, b: Vec<u8>) -> SqlValue {
        match self.ty {
            SqlType::NVarChar(_) | SqlType::NChar(_) | SqlType::NText | SqlType::Xml => {
                SqlValue::NVarChar(utf16le_to_string(&b))
            }
            SqlType::VarChar(_) | SqlType::Char(_) | SqlType::Text => {
                let utf8 = self.collation.map(|c| c.is_utf8()).unwrap_or(false);
                SqlValue::VarChar(if utf8 {
                    String::from_utf8_lossy(&b).into_owned()
                } else {
                    cp1252_decode(&b)
                })
            }
            _ => SqlValue::VarBinary(b),
        }
    }
}

fn decode_fixed(ty: &SqlType, b: &[u8]) -> Result<SqlValue, DecodeError> {
    let bad = |what| Err(DecodeError::Invalid(what));
    let le = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for (i, x) in b.iter().enumerate().take(8) {
            v |= (*x as u64) << (8 * i);
        }
        v
    };
    Ok(match ty {
        SqlType::Bit => SqlValue::Bit(b.first().copied().unwrap_or(0) != 0),
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => match b.len() {
            1 => SqlValue::TinyInt(b[0]),
            2 => SqlValue::SmallInt(le(b) as u16 as i16),
            4 => SqlValue::Int(le(b) as u32 as i32),
            8 => SqlValue::BigInt(le(b) as i64),
            _ => return bad("integer length"),
        },
        SqlType::Real | SqlType::Float => match b.len() {
            4 => SqlValue::Real(f32::from_bits(le(b) as u32)),
            8 => SqlValue::Float(f64::from_bits(le(b))),
            _ => return bad("float length"),
        },
        SqlType::Money | SqlType::SmallMoney => match b.len() {
            4 => SqlValue::Money(le(b) as u32 as i32 as i64),
            8 => {
                let hi = le(&b[..4]) as u32 as i32 as i64;
                let lo = le(&b[4..]);
                SqlValue::Money((hi << 32) | lo as i64)
            }
            _ => return bad("money length"),
        },
        SqlType::Decimal { precision, scale } => {
            if b.len() < 2 || b.len() > 17 {
                return bad("decimal length");
            }
            let mut mag = 0u128;
            for (i, x) in b[1..].iter().enumerate() {
                mag |= (*x as u128) << (8 * i);
            }
            let mag = i128::try_from(mag).map_err(|_| DecodeError::Invalid("decimal magnitude"))?;
            let value = if b[0] == 0 { -mag } else { mag };
            SqlValue::Decimal(Decimal {
                value,
                precision: *precision,
                scale: *scale,
            })
        }
        SqlType::Guid => {
            let a: [u8; 16] = b
                .try_into()
                .map_err(|_| DecodeError::Invalid("GUID length"))?;
            SqlValue::Guid(guid_swap(a))
        }
        SqlType::Date => {
            if b.len() != 3 {
                return bad("date length");
            }
            SqlValue::Date(Date(le(b) as i32))
        }
        SqlType::Time { scale } => SqlValue::Time(decode_time(b, *scale)?),
        SqlType::DateTime2 { scale } => {
            let tl = time_len(*scale);
            if b.len() != tl + 3 {
                return bad("datetime2 length");
            }
            SqlValue::DateTime2(DateTime2 {
                time: decode_time(&b[..tl], *scale)?,
                date: Date(le(&b[tl..]) as i32),
            })
        }
        SqlType::DateTimeOffset { scale } => {
            let tl = time_len(*scale);
            if b.len() != tl + 5 {
                return bad("datetimeoffset length");
            }
            let utc = DateTime2 {
                time: decode_time(&b[..tl], *scale)?,
                date: Date(le(&b[tl..tl + 3]) as i32),
            };
            let off = le(&b[tl + 3..]) as u16 as i16;
            SqlValue::DateTimeOffset(DateTimeOffset {
                local: utc.add_minutes(off as i64),
                offset_minutes: off,
            })
        }
        SqlType::DateTime | SqlType::SmallDateTime => match b.len() {
            8 => {
                let days = le(&b[..4]) as u32 as i32;
                let ticks300 = le(&b[4..]) as u32 as u64;
                let t = (ticks300 * 100_000 + 1) / 3; // 1/300 s -> 100 ns, rounded
                let base = DateTime2 {
                    date: Date(DAYS_TO_1900.saturating_add(days)),
                    time: Time(0),
                };
                SqlValue::DateTime(DateTime2 {
                    date: base.date,
                    time: Time(t.min(TICKS_PER_DAY - 1)),
                })
            }
            4 => {
                let days = le(&b[..2]) as i32;
                let mins = le(&b[2..]);
                SqlValue::DateTime(DateTime2 {
                    date: Date(DAYS_TO_1900 + days),
                    time: Time((mins * 600_000_000).min(TICKS_PER_DAY - 1)),
                })
            }
            _ => return bad("datetime length"),
        },
        _ => return bad("not a fixed type"),
    })
}

fn decode_time(b: &[u8], scale: u8) -> Result<Time, DecodeError> {
    if b.len() != time_len(scale) {
        return Err(DecodeError::Invalid("time length"));
    }
    let mut v = 0u64;
    for (i, x) in b.iter().enumerate() {
        v |= (*x as u64) << (8 * i);
    }
    let ticks = v.saturating_mul(10u64.pow(7 - scale as u32));
    if ticks >= TICKS_PER_DAY {
        return Err(DecodeError::Invalid("time out of range"));
    }
    Ok(Time(ticks))
}

/// Swaps between canonical order and the wire's mixed-endian GUID layout (an involution).
pub fn guid_swap(a: [u8; 16]) -> [u8; 16] {
    [
        a[3], a[2], a[1], a[0], a[5], a[4], a[7], a[6], a[8], a[9], a[10], a[11], a[12], a[13],
        a[14], a[15],
    ]
}

const PLP_NULL: u64 = 0xFFFF_FFFF_FFFF_FFFF;
const PLP_UNKNOWN: u64 = 0xFFFF_FFFF_FFFF_FFFE;

fn read_plp(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    let total = r.u64_le()?;
    if total == PLP_NULL {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let n = r.u32_le()? as usize;
        if n == 0 {
            break;
        }
        out.extend_from_slice(r.take(n)?);
    }
    if total != PLP_UNKNOWN && total != out.len() as u64 {
        return Err(DecodeError::Invalid("PLP length mismatch"));
    }
    Ok(Some(out))
}

const CP1252_HIGH: [u16; 32] = [
    0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
    0x0152, 0xFFFD, 0x017D, 0xFFFD, 0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178,
];

/// Single-byte text is decoded as Windows-1252, the code page of the default collation.
pub fn cp1252_decode(b: &[u8]) -> String {
    b.iter()
        .map(|&c| match c {
            0x80..=0x9F => char::from_u32(CP1252_HIGH[(c - 0x80) as usize] as u32).unwrap_or('?'),
            _ => c as char,
        })
        .collect()
}

pub fn cp1252_encode(s: &str) -> Vec<u8> {
    s.chars()
        .map(|ch| {
            let u = ch as u32;
            if u < 0x80 || (0xA0..=0xFF).contains(&u) {
                u as u8
            } else {
                CP1252_HIGH
                    .iter()
                    .position(|&x| x as u32 == u && x != 0xFFFD)
                    .map(|i| 0x80 + i as u8)
                    .unwrap_or(b'?')
            }
        })
        .collect()
}

// ---------------------------------------------------------------- encoding

/// A result-set column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: SqlType) -> Self {
        Column {
            name: name.into(),
            ty,
            nullable: true,
        }
    }
}

fn is_plp(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::NVarChar(None) | SqlType::VarChar(None) | SqlType::VarBinary(None) | SqlType::Xml
    )
}

/// Writes TYPE_INFO for `ty` the way SQL Server sends it in COLMETADATA / RETURNVALUE.
/// Legacy LOB types are sent as their (MAX) equivalents.
pub fn encode_type_info(ty: &SqlType, out: &mut Vec<u8>) {
    let coll = Collation::default().encode();
    match *ty {
        SqlType::Bit => out.extend_from_slice(&[id::BITN, 1]),
        SqlType::TinyInt => out.extend_from_slice(&[id::INTN, 1]),
        SqlType::SmallInt => out.extend_from_slice(&[id::INTN, 2]),
        SqlType::Int => out.extend_from_slice(&[id::INTN, 4]),
        SqlType::BigInt => out.extend_from_slice(&[id::INTN, 8]),
        SqlType::Real => out.extend_from_slice(&[id::FLTN, 4]),
        SqlType::Float => out.extend_from_slice(&[id::FLTN, 8]),
        SqlType::Decimal { precision, scale } => {
            let p = precision.clamp(1, 38);
            out.extend_from_slice(&[id::DECIMALN, decimal_len(p), p, scale.min(p)])
        }
        SqlType::Money => out.extend_from_slice(&[id::MONEYN, 8]),
        SqlType::SmallMoney => out.extend_from_slice(&[id::MONEYN, 4]),
        SqlType::NVarChar(l) => {
            out.push(id::NVARCHAR);
            let wl = l.map(|c| c.clamp(1, 4000) * 2).unwrap_or(0xFFFF);
            out.extend_from_slice(&wl.to_le_bytes());
            out.extend_from_slice(&coll);
        }
        SqlType::NText | SqlType::Xml => {
            out.push(id::NVARCHAR);
            out.extend_from_slice(&0xFFFFu16.to_le_bytes());
            out.extend_from_slice(&coll);
        }
        SqlType::NChar(l) => {
            out.push(id::NCHAR);
            out.extend_from_slice(&(l.clamp(1, 4000) * 2).to_le_bytes());
            out.extend_from_slice(&coll);
        }
        SqlType::VarChar(l) => {
            out.push(id::BIGVARCHR);
            out.extend_from_slice(&l.map(|c| c.clamp(1, 8000)).unwrap_or(0xFFFF).to_le_bytes());
            out.extend_from_slice(&coll);
        }
        SqlType::Text => {
            out.push(id::BIGVARCHR);
            out.extend_from_slice(&0xFFFFu16.to_le_bytes());
            out.extend_from_slice(&coll);
        }
        SqlType::Char(l) => {
            out.push(id::BIGCHAR);
            out.extend_from_slice(&l.clamp(1, 8000).to_le_bytes());
            out.extend_from_slice(&coll);
        }
        SqlType::VarBinary(l) => {
            out.push(id::BIGVARBIN);
            out.extend_from_slice(&l.map(|c| c.clamp(1, 8000)).unwrap_or(0xFFFF).to_le_bytes());
        }
        SqlType::Image => {
            out.push(id::BIGVARBIN);
            out.extend_from_slice(&0xFFFFu16.to_le_bytes());
        }
        SqlType::Binary(l) => {
            out.push(id::BIGBINARY);
            out.extend_from_slice(&l.clamp(1, 8000).to_le_bytes());
        }
        SqlType::Guid => out.extend_from_slice(&[id::GUID, 16]),
        SqlType::Date => out.push(id::DATEN),
        SqlType::Time { scale } => out.extend_from_slice(&[id::TIMEN, scale.min(7)]),
        SqlType::DateTime2 { scale } => out.extend_from_slice(&[id::DATETIME2N, scale.min(7)]),
        SqlType::DateTimeOffset { scale } => {
            out.extend_from_slice(&[id::DATETIMEOFFSETN, scale.min(7)])
        }
        SqlType::DateTime => out.extend_from_slice(&[id::DATETIMN, 8]),
        SqlType::SmallDateTime => out.extend_from_slice(&[id::DATETIMN, 4]),
    }
}

/// COLMETADATA column entry: UserType, Flags, TYPE_INFO, ColName.
pub(crate) fn encode_column(c: &Column, out: &mut Vec<u8>) {
    out.extend_from_slice(&0u32.to_le_bytes());
    // fNullable | fUpdateable=unknown(0b10 << 2)
    let flags: u16 = if c.nullable { 0x0001 } else { 0 } | 0x0008;
    out.extend_from_slice(&flags.to_le_bytes());
    encode_type_info(&c.ty, out);
    put_b_varchar(out, &c.name);
}

fn err<T>(ty: &SqlType, v: &SqlValue) -> Result<T, EncodeError> {
    Err(EncodeError(format!("{v:?} does not fit {ty:?}")))
}

fn as_i64(v: &SqlValue) -> Option<i64> {
    Some(match *v {
        SqlValue::Bit(b) => b as i64,
        SqlValue::TinyInt(x) => x as i64,
        SqlValue::SmallInt(x) => x as i64,
        SqlValue::Int(x) => x as i64,
        SqlValue::BigInt(x) => x,
        _ => return None,
    })
}

fn as_datetime2(v: &SqlValue) -> Option<DateTime2> {
    match *v {
        SqlValue::DateTime(d) | SqlValue::DateTime2(d) => Some(d),
        SqlValue::Date(d) => Some(DateTime2 {
            date: d,
            time: Time(0),
        }),
        _ => None,
    }
}

fn put_time(out: &mut Vec<u8>, t: Time, scale: u8) -> u64 {
    let div = 10u64.pow(7 - scale as u32);
    // Round half up; a carry into the next day is returned to the caller.
    let mut units = (t.0.min(TICKS_PER_DAY - 1) + div / 2) / div;
    let per_day = TICKS_PER_DAY / div;
    let carry = units / per_day;
    units %= per_day;
    out.extend_from_slice(&units.to_le_bytes()[..time_len(scale)]);
    carry
}

fn put_date(out: &mut Vec<u8>, d: Date) -> Result<(), EncodeError> {
    if !(0..=3_652_058).contains(&d.0) {
        return Err(EncodeError(format!("date out of range: {d:?}")));
    }
    out.extend_from_slice(&d.0.to_le_bytes()[..3]);
    Ok(())
}

fn put_plp(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    // Chunks stay below 2^31 (u32 length); one chunk per value is typical.
    for c in data.chunks(0x7FFF_FFFF) {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
}

fn rescale(d: &Decimal, scale: u8) -> Option<i128> {
    if d.scale == scale {
        Some(d.value)
    } else if d.scale < scale {
        d.value
            .checked_mul(10i128.checked_pow((scale - d.scale) as u32)?)
    } else {
        let div = 10i128.checked_pow((d.scale - scale) as u32)?;
        let q = d.value / div;
        let r = d.value % div;
        Some(if r.abs() * 2 >= div {
            q + d.value.signum()
        } else {
            q
        })
    }
}

/// Writes a value in the ROW encoding of `ty`.
pub fn encode_value(ty: &SqlType, v: &SqlValue, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if matches!(v, SqlValue::Null) {
        match ty {
            _ if is_plp(ty) || matches!(ty, SqlType::NText | SqlType::Text | SqlType::Image) => {
                out.extend_from_slice(&PLP_NULL.to_le_bytes())
            }
            SqlType::NVarChar(_)
            | SqlType::NChar(_)
            | SqlType::VarChar(_)
            | SqlType::Char(_)
            | SqlType::VarBinary(_)
            | SqlType::Binary(_) => out.extend_from_slice(&[0xFF, 0xFF]),
            _ => out.push(0),
        }
        return Ok(());
    }
    match *ty {
        SqlType::Bit => match v {
            SqlValue::Bit(b) => out.extend_from_slice(&[1, *b as u8]),
            _ => match as_i64(v) {
                Some(i) => out.extend_from_slice(&[1, (i != 0) as u8]),
                None => return err(ty, v),
            },
        },
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            let i = as_i64(v).map_or_else(|| err(ty, v), Ok)?;
            let ok = match ty {
                SqlType::TinyInt => u8::try_from(i)
                    .map(|x| out.extend_from_slice(&[1, x]))
                    .is_ok(),
                SqlType::SmallInt => i16::try_from(i)
                    .map(|x| {
                        out.push(2);
                        out.extend_from_slice(&x.to_le_bytes())
                    })
                    .is_ok(),
                SqlType::Int => i32::try_from(i)
                    .map(|x| {
                        out.push(4);
                        out.extend_from_slice(&x.to_le_bytes())
                    })
                    .is_ok(),
                _ => {
                    out.push(8);
                    out.extend_from_slice(&i.to_le_bytes());
                    true
                }
            };
            if !ok {
                return err(ty, v);
            }
        }
        SqlType::Real => {
            let f = match *v {
                SqlValue::Real(f) => f,
                SqlValue::Float(f) => f as f32,
                _ => as_i64(v).map_or_else(|| err(ty, v), Ok)? as f32,
            };
            out.push(4);
            out.extend_from_slice(&f.to_le_bytes());
        }
        SqlType::Float => {
            let f = match *v {
                SqlValue::Real(f) => f as f64,
                SqlValue::Float(f) => f,
                _ => as_i64(v).map_or_else(|| err(ty, v), Ok)? as f64,
            };
            out.push(8);
            out.extend_from_slice(&f.to_le_bytes());
        }
        SqlType::Decimal { precision, scale } => {
            let p = precision.clamp(1, 38);
            let d = match *v {
                SqlValue::Decimal(d) => d,
                SqlValue::Money(m) => Decimal {
                    value: m as i128,
                    precision: 19,
                    scale: 4,
                },
                _ => match as_i64(v) {
                    Some(i) => Decimal {
                        value: i as i128,
                        precision: 19,
                        scale: 0,
                    },
                    None => return err(ty, v),
                },
            };
            let val = rescale(&d, scale).map_or_else(|| err(ty, v), Ok)?;
            let mag = val.unsigned_abs();
            if mag >= 10u128.pow(p as u32) {
                return err(ty, v);
            }
            let len = decimal_len(p);
            out.push(len);
            out.push(if val < 0 { 0 } else { 1 });
            out.extend_from_slice(&mag.to_le_bytes()[..(len - 1) as usize]);
        }
        SqlType::Money | SqlType::SmallMoney => {
            let m = match *v {
                SqlValue::Money(m) => m,
                SqlValue::Decimal(d) => rescale(&d, 4)
                    .and_then(|x| i64::try_from(x).ok())
                    .map_or_else(|| err(ty, v), Ok)?,
                _ => as_i64(v)
                    .and_then(|i| i.checked_mul(10_000))
                    .map_or_else(|| err(ty, v), Ok)?,
            };
            if *ty == SqlType::SmallMoney {
                let m = i32::try_from(m).map_err(|_| EncodeError("smallmoney overflow".into()))?;
                out.push(4);
                out.extend_from_slice(&m.to_le_bytes());
            } else {
                out.push(8);
                out.extend_from_slice(&((m >> 32) as i32).to_le_bytes());
                out.extend_from_slice(&(m as u32).to_le_bytes());
            }
        }
        SqlType::NVarChar(_) | SqlType::NChar(_) | SqlType::NText | SqlType::Xml => {
            let s = match v {
                SqlValue::NVarChar(s) | SqlValue::VarChar(s) => s,
                _ => return err(ty, v),
            };
            let mut b = Vec::with_capacity(s.len() * 2);
            put_utf16(&mut b, s);
            put_sized(ty, &b, out)?;
        }
        SqlType::VarChar(_) | SqlType::Char(_) | SqlType::Text => {
            let s = match v {
                SqlValue::NVarChar(s) | SqlValue::VarChar(s) => s,
                _ => return err(ty, v),
            };
            put_sized(ty, &cp1252_encode(s), out)?;
        }
        SqlType::VarBinary(_) | SqlType::Binary(_) | SqlType::Image => match v {
            SqlValue::VarBinary(b) => put_sized(ty, b, out)?,
            _ => return err(ty, v),
        },
        SqlType::Guid => match v {
            SqlValue::Guid(g) => {
                out.push(16);
                out.extend_from_slice(&guid_swap(*g));
            }
            _ => return err(ty, v),
        },
        SqlType::Date => {
            let d = match v {
                SqlValue::Date(d) => *d,
                _ => as_datetime2(v).map_or_else(|| err(ty, v), Ok)?.date,
            };
            out.push(3);
            put_date(out, d)?;
        }
        SqlType::Time { scale } => {
            let t = match v {
                SqlValue::Time(t) => *t,
                _ => as_datetime2(v).map_or_else(|| err(ty, v), Ok)?.time,
            };
            let scale = scale.min(7);
            out.push(time_len(scale) as u8);
            // A time that rounds up to midnight wraps, as SQL Server does.
            put_time(out, t, scale);
        }
        SqlType::DateTime2 { scale } => {
            let d = as_datetime2(v).map_or_else(|| err(ty, v), Ok)?;
            let scale = scale.min(7);
            out.push(time_len(scale) as u8 + 3);
            let carry = put_time(out, d.time, scale);
            put_date(out, Date(d.date.0.saturating_add(carry as i32)))?;
        }
        SqlType::DateTimeOffset { scale } => {
            let dto = match v {
                SqlValue::DateTimeOffset(d) => *d,
                _ => DateTimeOffset {
                    local: as_datetime2(v).map_or_else(|| err(ty, v), Ok)?,
                    offset_minutes: 0,
                },
            };
            let utc = dto.local.add_minutes(-(dto.offset_minutes as i64));
            let scale = scale.min(7);
            out.push(time_len(scale) as u8 + 5);
            let carry = put_time(out, utc.time, scale);
            put_date(out, Date(utc.date.0.saturating_add(carry as i32)))?;
            out.extend_from_slice(&dto.offset_minutes.to_le_bytes());
        }
        SqlType::DateTime => {
            let d = as_datetime2(v).map_or_else(|| err(ty, v), Ok)?;
            let mut ticks = (d.time.0.min(TICKS_PER_DAY - 1) * 3 + 50_000) / 100_000;
            let mut days = d.date.0 as i64 - DAYS_TO_1900 as i64;
            if ticks >= 300 * 86_400 {
                ticks -= 300 * 86_400;
                days += 1;
            }
            let days = i32::try_from(days).map_err(|_| EncodeError("datetime range".into()))?;
            out.push(8);
            out.extend_from_slice(&days.to_le_bytes());
            out.extend_from_slice(&(ticks as u32).to_le_bytes());
        }
        SqlType::SmallDateTime => {
            let d = as_datetime2(v).map_or_else(|| err(ty, v), Ok)?;
            let mut mins = (d.time.0.min(TICKS_PER_DAY - 1) + 300_000_000) / 600_000_000;
            let mut days = d.date.0 as i64 - DAYS_TO_1900 as i64;
            if mins >= 1440 {
                mins -= 1440;
                days += 1;
            }
            let days =
                u16::try_from(days).map_err(|_| EncodeError("smalldatetime range".into()))?;
            out.push(4);
            out.extend_from_slice(&days.to_le_bytes());
            out.extend_from_slice(&(mins as u16).to_le_bytes());
        }
    }
    Ok(())
}

/// Length-prefixed (USHORTLEN) or PLP body, by the column's declared type.
fn put_sized(ty: &SqlType, data: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if is_plp(ty) || matches!(ty, SqlType::NText | SqlType::Text | SqlType::Image) {
        put_plp(out, data);
        return Ok(());
    }
    let max = match *ty {
        SqlType::NVarChar(Some(l)) | SqlType::NChar(l) => l.clamp(1, 4000) as usize * 2,
        SqlType::VarChar(Some(l))
        | SqlType::Char(l)
        | SqlType::VarBinary(Some(l))
        | SqlType::Binary(l) => l.clamp(1, 8000) as usize,
        _ => 8000,
    };
    if data.len() > max {
        return Err(EncodeError(format!(
            "{} bytes exceed column length {max}",
            data.len()
        )));
    }
    // Fixed-length types are padded as the server would (spaces / zeros).
    let pad = match ty {
        SqlType::NChar(_) | SqlType::Char(_) | SqlType::Binary(_) => max - data.len(),
        _ => 0,
    };
    out.extend_from_slice(&((data.len() + pad) as u16).to_le_bytes());
    out.extend_from_slice(data);
    match ty {
        SqlType::NChar(_) => (0..pad / 2).for_each(|_| out.extend_from_slice(&[0x20, 0])),
        SqlType::Char(_) => out.extend(std::iter::repeat_n(0x20, pad)),
        _ => out.extend(std::iter::repeat_n(0, pad)),
    }
    Ok(())
}

/// Decodes TYPE_INFO followed by one value; the inverse of [`encode_type_info`] +
/// [`encode_value`], exposed for tests and fuzzing.
pub fn decode_typed_value(b: &[u8]) -> Result<(SqlType, SqlValue, usize), DecodeError> {
    let mut r = Reader::new(b);
    let ti = TypeInfo::decode(&mut r)?;
    let v = ti.decode_value(&mut r)?;
    Ok((ti.ty, v, r.pos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(ty: SqlType, v: SqlValue) -> SqlValue {
        let mut b = Vec::new();
        encode_type_info(&ty, &mut b);
        encode_value(&ty, &v, &mut b).unwrap();
        let (t2, v2, used) = decode_typed_value(&b).unwrap();
        assert_eq!(used, b.len(), "{ty:?}");
        assert_eq!(t2, ty);
        v2
    }

    #[test]
    fn round_trips() {
        let d = DateTime2 {
            date: Date::from_ymd(2024, 2, 29).unwrap(),
            time: Time::from_hms_nano(13, 45, 7, 123_456_700).unwrap(),
        };
        let cases = vec![
            (SqlType::Bit, SqlValue::Bit(true)),
            (SqlType::TinyInt, SqlValue::TinyInt(200)),
            (SqlType::SmallInt, SqlValue::SmallInt(-3)),
            (SqlType::Int, SqlValue::Int(-123456)),
            (SqlType::BigInt, SqlValue::BigInt(i64::MIN)),
            (SqlType::Real, SqlValue::Real(1.5)),
            (SqlType::Float, SqlValue::Float(-2.25e100)),
            (
                SqlType::Decimal {
                    precision: 38,
                    scale: 10,
                },
                SqlValue::Decimal(Decimal {
                    value: -(10i128.pow(37) + 5),
                    precision: 38,
                    scale: 10,
                }),
            ),
            (
                SqlType::Decimal {
                    precision: 5,
                    scale: 2,
                },
                SqlValue::Decimal(Decimal {
                    value: 12345,
                    precision: 5,
                    scale: 2,
                }),
            ),
            (SqlType::Money, SqlValue::Money(-922_337_203_685_477_580)),
            (SqlType::SmallMoney, SqlValue::Money(-12345)),
            (
                SqlType::NVarChar(Some(20)),
                SqlValue::NVarChar("héllo ✓ 𝄞".into()),
            ),
            (
                SqlType::NVarChar(None),
                SqlValue::NVarChar("x".repeat(9000)),
            ),
            (SqlType::NVarChar(None), SqlValue::NVarChar(String::new())),
            (
                SqlType::VarChar(Some(10)),
                SqlValue::VarChar("café€".into()),
            ),
            (SqlType::VarChar(None), SqlValue::VarChar("abc".into())),
            (
                SqlType::VarBinary(Some(4)),
                SqlValue::VarBinary(vec![0, 1, 0xFF]),
            ),
            (
                SqlType::VarBinary(None),
                SqlValue::VarBinary(vec![7; 10000]),
            ),
            (
                SqlType::Guid,
                SqlValue::Guid([
                    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 9, 10, 11, 12, 13, 14, 15, 16,
                ]),
            ),
            (
                SqlType::Date,
                SqlValue::Date(Date::from_ymd(1, 1, 1).unwrap()),
            ),
            (
                SqlType::Date,
                SqlValue::Date(Date::from_ymd(9999, 12, 31).unwrap()),
            ),
            (SqlType::Time { scale: 7 }, SqlValue::Time(d.time)),
            (SqlType::DateTime2 { scale: 7 }, SqlValue::DateTime2(d)),
            (
                SqlType::DateTimeOffset { scale: 7 },
                SqlValue::DateTimeOffset(DateTimeOffset {
                    local: d,
                    offset_minutes: -330,
                }),
            ),
        ];
        for (ty, v) in cases {
            assert_eq!(rt(ty, v.clone()), v, "{ty:?}");
        }
        for ty in [
            SqlType::Int,
            SqlType::NVarChar(None),
            SqlType::NVarChar(Some(5)),
            SqlType::Guid,
            SqlType::Decimal {
                precision: 10,
                scale: 2,
            },
            SqlType::DateTime2 { scale: 3 },
        ] {
            assert_eq!(rt(ty, SqlValue::Null), SqlValue::Null);
        }
    }

    #[test]
    fn known_bytes() {
        // GUID 6F9619FF-8B86-D011-B42D-00C04FC964FF (the spec's example)
        let canon = [
            0x6F, 0x96, 0x19, 0xFF, 0x8B, 0x86, 0xD0, 0x11, 0xB4, 0x2D, 0x00, 0xC0, 0x4F, 0xC9,
            0x64, 0xFF,
        ];
        let mut b = Vec::new();
        encode_value(&SqlType::Guid, &SqlValue::Guid(canon), &mut b).unwrap();
        assert_eq!(&b[1..5], &[0xFF, 0x19, 0x96, 0x6F]);
        // Decimal 12.34 as DECIMAL(5,2): len 5, sign 1, 1234 LE
        let mut b = Vec::new();
        encode_value(
            &SqlType::Decimal {
                precision: 5,
                scale: 2,
            },
            &SqlValue::Decimal(Decimal {
                value: 1234,
                precision: 5,
                scale: 2,
            }),
            &mut b,
        )
        .unwrap();
        assert_eq!(b, [5, 1, 0xD2, 0x04, 0, 0]);
        // Collation of SQL_Latin1_General_CP1_CI_AS
        assert_eq!(
            Collation::default().encode(),
            [0x09, 0x04, 0xD0, 0x00, 0x34]
        );
        // DATETIME 1900-01-01 00:00:00 is zero days zero ticks
        let mut b = Vec::new();
        let dt = DateTime2 {
            date: Date::from_ymd(1900, 1, 1).unwrap(),
            time: Time(0),
        };
        encode_value(&SqlType::DateTime, &SqlValue::DateTime(dt), &mut b).unwrap();
        assert_eq!(b, [8, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Money 1.0001 -> 10001: hi 0, lo 10001
        let mut b = Vec::new();
        encode_value(&SqlType::Money, &SqlValue::Money(10001), &mut b).unwrap();
        assert_eq!(b, [8, 0, 0, 0, 0, 0x11, 0x27, 0, 0]);
    }

    #[test]
    fn legacy_lob_parameters() {
        // NTEXT param: TYPE_INFO (len, collation) then a 4-byte length and UCS-2 data
        let mut b = vec![
            id::NTEXT,
            0xFF,
            0xFF,
            0xFF,
            0x7F,
            0x09,
            0x04,
            0xD0,
            0x00,
            0x34,
        ];
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&[b'h', 0, b'i', 0]);
        let (ty, v, used) = decode_typed_value(&b).unwrap();
        assert_eq!(
            (ty, v, used),
            (SqlType::NText, SqlValue::NVarChar("hi".into()), b.len())
        );
        let b = [id::IMAGE, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(decode_typed_value(&b).unwrap().1, SqlValue::Null);
    }

    #[test]
    fn dates() {
        assert_eq!(Date::from_ymd(1, 1, 1), Some(Date(0)));
        assert_eq!(Date::from_ymd(1900, 1, 1), Some(Date(DAYS_TO_1900)));
        for days in [0, 1, 59, 365, 693_595, 738_000, 3_652_058] {
            let (y, m, d) = Date(days).to_ymd();
            assert_eq!(Date::from_ymd(y, m, d), Some(Date(days)));
        }
        assert_eq!(Date::from_ymd(2023, 2, 29), None);
    }

    #[test]
    fn datetime_round_trip_rounds() {
        let dt = DateTime2 {
            date: Date::from_ymd(2020, 5, 6).unwrap(),
            time: Time::from_hms_nano(1, 2, 3, 500_000_000).unwrap(),
        };
        assert_eq!(
            rt(SqlType::DateTime, SqlValue::DateTime(dt)),
            SqlValue::DateTime(dt)
        );
    }

    #[test]
    fn overflow_rejected() {
        let mut b = Vec::new();
        assert!(encode_value(&SqlType::TinyInt, &SqlValue::Int(300), &mut b).is_err());
        assert!(encode_value(
            &SqlType::NVarChar(Some(2)),
            &SqlValue::NVarChar("abc".into()),
            &mut b
        )
        .is_err());
        assert!(encode_value(
            &SqlType::Decimal {
                precision: 3,
                scale: 0
            },
            &SqlValue::Decimal(Decimal {
                value: 1000,
                precision: 4,
                scale: 0
            }),
            &mut b
        )
        .is_err());
    }
}

// ---------------------------------------------------------------- conveniences

impl SqlValue {
    /// The column type a value of this kind is naturally sent as, for result sets
    /// whose types are only known from their values. `None` for NULL.
    pub fn natural_type(&self) -> Option<SqlType> {
        Some(match self {
            SqlValue::Null => return None,
            SqlValue::Bit(_) => SqlType::Bit,
            SqlValue::TinyInt(_) => SqlType::TinyInt,
            SqlValue::SmallInt(_) => SqlType::SmallInt,
            SqlValue::Int(_) => SqlType::Int,
            SqlValue::BigInt(_) => SqlType::BigInt,
            SqlValue::Real(_) => SqlType::Real,
            SqlValue::Float(_) => SqlType::Float,
            SqlValue::Decimal(d) => SqlType::Decimal {
                precision: d.precision.clamp(1, 38),
                scale: d.scale.min(38),
            },
            SqlValue::Money(_) => SqlType::Money,
            SqlValue::NVarChar(s) if s.encode_utf16().count() <= 4000 => {
                SqlType::NVarChar(Some(4000))
            }
            SqlValue::NVarChar(_) => SqlType::NVarChar(None),
            SqlValue::VarChar(s) if s.len() <= 8000 => SqlType::VarChar(Some(8000)),
            SqlValue::VarChar(_) => SqlType::VarChar(None),
            SqlValue::VarBinary(b) if b.len() <= 8000 => SqlType::VarBinary(Some(8000)),
            SqlValue::VarBinary(_) => SqlType::VarBinary(None),
            SqlValue::Guid(_) => SqlType::Guid,
            SqlValue::Date(_) => SqlType::Date,
            SqlValue::Time(_) => SqlType::Time { scale: 7 },
            SqlValue::DateTime(_) => SqlType::DateTime,
            SqlValue::DateTime2(_) => SqlType::DateTime2 { scale: 7 },
            SqlValue::DateTimeOffset(_) => SqlType::DateTimeOffset { scale: 7 },
        })
    }
}

impl Decimal {
    /// Parses `-123.4500` style text; precision is the digit count (at least the scale).
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let int = int.trim_start_matches('0');
        let total = int.len() + frac.len();
        if total > 38 {
            return None;
        }
        let mut v: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            v = v * 10 + (b - b'0') as i128;
        }
        let scale = frac.len() as u8;
        Some(Decimal {
            value: if neg { -v } else { v },
            precision: (total as u8).max(scale).max(1),
            scale,
        })
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mag = self.value.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let sign = if self.value < 0 { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{mag}");
        }
        let padded = format!("{mag:0>width$}", width = scale + 1);
        let (i, fr) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{i}.{fr}")
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.to_ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl std::fmt::Display for Time {
    /// hh:mm:ss.fffffff (7 fractional digits, as SQL Server prints TIME(7)).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (h, m, s, n) = self.to_hms_nano();
        write!(f, "{h:02}:{m:02}:{s:02}.{:07}", n / 100)
    }
}

impl std::fmt::Display for DateTime2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.date, self.time)
    }
}

impl std::fmt::Display for DateTimeOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = self.offset_minutes;
        let sign = if o < 0 { '-' } else { '+' };
        write!(
            f,
            "{} {sign}{:02}:{:02}",
            self.local,
            o.unsigned_abs() / 60,
            o.unsigned_abs() % 60
        )
    }
}

/// Formats a canonical-order GUID as SQL Server prints it (upper case).
pub fn guid_to_string(g: &[u8; 16]) -> String {
    let h: Vec<String> = g.iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// Parses "6F9619FF-8B86-D011-B42D-00C04FC964FF" (braces optional) to canonical order.
pub fn guid_parse(s: &str) -> Option<[u8; 16]> {
    let hex: String = s
        .trim()
        .trim_matches(|c| c == '{' || c == '}')
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut g = [0u8; 16];
    for (i, b) in g.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(g)
}

#[cfg(test)]
mod convenience_tests {
    use super::*;

    #[test]
    fn decimal_text() {
        for s in [
            "0",
            "-1.5",
            "12345.6789",
            "0.0001",
            "-0.50",
            "99999999999999999999999999999999999999",
        ] {
            let d = Decimal::parse(s).unwrap();
            assert_eq!(d.to_string(), s.trim_start_matches('+'), "{s}");
        }
        assert_eq!(Decimal::parse("abc"), None);
        assert_eq!(Decimal::parse("."), None);
        assert_eq!(Decimal::parse(&"9".repeat(39)), None);
    }

    #[test]
    fn guid_and_dates_text() {
        let s = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        assert_eq!(guid_to_string(&guid_parse(s).unwrap()), s);
        assert_eq!(guid_parse("xyz"), None);
        let dt = DateTime2 {
            date: Date::from_ymd(2024, 2, 29).unwrap(),
            time: Time::from_hms_nano(1, 2, 3, 4_500).unwrap(),
        };
        assert_eq!(dt.to_string(), "2024-02-29 01:02:03.0000045");
        let o = DateTimeOffset {
            local: dt,
            offset_minutes: -90,
        };
        assert_eq!(o.to_string(), "2024-02-29 01:02:03.0000045 -01:30");
        assert_eq!(SqlValue::Int(1).natural_type(), Some(SqlType::Int));
    }
}
