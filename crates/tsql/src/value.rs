//! Runtime values with T-SQL types, and CAST/CONVERT between them with SQL Server's errors.

use crate::decimal::{pow10, Decimal};
use crate::error::{Result, SqlError};
use crate::types::{DataType, Len};
use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike,
};
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bit(bool),
    TinyInt(u8),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    Decimal(Decimal),
    /// MONEY as an integer count of 1/10000.
    Money(i64),
    SmallMoney(i64),
    Float(f64),
    Real(f32),
    /// VARCHAR/CHAR text (the declared length is not carried; assignment applies it).
    VarChar(String),
    NVarChar(String),
    Binary(Vec<u8>),
    Date(NaiveDate),
    /// TIME(n) with its fractional-second precision.
    Time(NaiveTime, u8),
    DateTime(NaiveDateTime),
    SmallDateTime(NaiveDateTime),
    DateTime2(NaiveDateTime, u8),
    DateTimeOffset(DateTime<FixedOffset>, u8),
    /// UNIQUEIDENTIFIER bytes in display order (as written in text).
    Guid([u8; 16]),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value's T-SQL type (None for an untyped NULL).
    pub fn data_type(&self) -> Option<DataType> {
        Some(match self {
            Value::Null => return None,
            Value::Bit(_) => DataType::Bit,
            Value::TinyInt(_) => DataType::TinyInt,
            Value::SmallInt(_) => DataType::SmallInt,
            Value::Int(_) => DataType::Int,
            Value::BigInt(_) => DataType::BigInt,
            Value::Decimal(d) => d.data_type(),
            Value::Money(_) => DataType::Money,
            Value::SmallMoney(_) => DataType::SmallMoney,
            Value::Float(_) => DataType::Float,
            Value::Real(_) => DataType::Real,
            Value::VarChar(s) => {
                let n = s.chars().count() as u32;
                DataType::VarChar(if n > 8000 { Len::Max } else { Len::N(n.max(1)) })
            }
            Value::NVarChar(s) => {
                let n = s.chars().count() as u32;
                DataType::NVarChar(if n > 4000 { Len::Max } else { Len::N(n.max(1)) })
            }
            Value::Binary(b) => {
                let n = b.len() as u32;
                DataType::VarBinary(if n > 8000 { Len::Max } else { Len::N(n.max(1)) })
            }
            Value::Date(_) => DataType::Date,
            Value::Time(_, p) => DataType::Time(*p),
            Value::DateTime(_) => DataType::DateTime,
            Value::SmallDateTime(_) => DataType::SmallDateTime,
            Value::DateTime2(_, p) => DataType::DateTime2(*p),
            Value::DateTimeOffset(_, p) => DataType::DateTimeOffset(*p),
            Value::Guid(_) => DataType::UniqueIdentifier,
        })
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::VarChar(s) | Value::NVarChar(s) => Some(s),
            _ => None,
        }
    }

    /// Integer view for exact integer types and bit.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Bit(b) => Some(*b as i64),
            Value::TinyInt(v) => Some(*v as i64),
            Value::SmallInt(v) => Some(*v as i64),
            Value::Int(v) => Some(*v as i64),
            Value::BigInt(v) => Some(*v),
            _ => None,
        }
    }

    /// Exact decimal view for exact numerics.
    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Decimal(d) => Some(*d),
            Value::Money(m) => Some(Decimal::new(*m as i128, 19, 4)),
            Value::SmallMoney(m) => Some(Decimal::new(*m as i128, 10, 4)),
            v => v.as_i64().map(|i| {
                let (p, _) = v.data_type().map(|t| t.numeric_ps()).unwrap_or((19, 0));
                Decimal::new(i as i128, p, 0)
            }),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Real(f) => Some(*f as f64),
            v => v.as_decimal().map(|d| d.to_f64()),
        }
    }

    /// Text for PRINT, string concatenation targets and result rendering: CONVERT(nvarchar, v) style 0.
    pub fn to_text(&self) -> Option<String> {
        match convert(self, &DataType::NVarChar(Len::Max), None) {
            Ok(Value::NVarChar(s)) => Some(s),
            _ => None,
        }
    }

    /// SQL Server's type name for error messages ("varchar", "nvarchar", "int").
    pub fn type_name(&self) -> String {
        self.data_type()
            .map(|t| t.base_name())
            .unwrap_or_else(|| "int".into())
    }
}

fn conversion_failed(v: &Value, to: &DataType) -> SqlError {
    let shown = match v {
        Value::VarChar(s) | Value::NVarChar(s) => s.clone(),
        other => other.to_text().unwrap_or_default(),
    };
    SqlError::conversion(
        &format!("the {} value '{}'", v.type_name(), shown),
        &to.base_name(),
    )
}

fn overflow_to(to: &DataType) -> SqlError {
    SqlError::overflow(&to.base_name())
}

fn int_in_range(v: i128, to: &DataType) -> Result<Value> {
    let out = match to {
        DataType::TinyInt if (0..=255).contains(&v) => Value::TinyInt(v as u8),
        DataType::SmallInt if (i16::MIN as i128..=i16::MAX as i128).contains(&v) => {
            Value::SmallInt(v as i16)
        }
        DataType::Int if (i32::MIN as i128..=i32::MAX as i128).contains(&v) => Value::Int(v as i32),
        DataType::BigInt if (i64::MIN as i128..=i64::MAX as i128).contains(&v) => {
            Value::BigInt(v as i64)
        }
        DataType::Bit => Value::Bit(v != 0),
        _ => return Err(overflow_to(to)),
    };
    Ok(out)
}

fn money_from_decimal(d: &Decimal, small: bool) -> Result<Value> {
    let to = if small {
        DataType::SmallMoney
    } else {
        DataType::Money
    };
    let r = d.rescale(38, 4).map_err(|_| overflow_to(&to))?;
    let m = r.mantissa;
    if small {
        if !(i32::MIN as i128..=i32::MAX as i128).contains(&m) {
            return Err(overflow_to(&to));
        }
        Ok(Value::SmallMoney(m as i64))
    } else {
        if m < i64::MIN as i128 || m > i64::MAX as i128 {
            return Err(overflow_to(&to));
        }
        Ok(Value::Money(m as i64))
    }
}

/// Parses an integer string the way CAST(varchar AS int) does: optional spaces and sign, digits only.
fn parse_int_text(s: &str) -> Option<i128> {
    let t = s.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\n' || c == '\r');
    if t.is_empty() {
        return Some(0);
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r.trim_start()),
        None => (false, t.strip_prefix('+').unwrap_or(t).trim_start()),
    };
    if body.is_empty() || body.len() > 38 || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i128 = body.parse().ok()?;
    Some(if neg { -v } else { v })
}

fn parse_float_text(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Some(0.0);
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    t.parse().ok()
}

/// CAST(v AS to) / CONVERT(to, v, style).
pub fn convert(v: &Value, to: &DataType, style: Option<i64>) -> Result<Value> {
    use DataType as T;
    if v.is_null() {
        return Ok(Value::Null);
    }
    if to.is_string() {
        return to_string_type(v, to, style);
    }
    match to {
        T::SysName => to_string_type(v, &T::NVarChar(Len::N(128)), style),
        T::Bit | T::TinyInt | T::SmallInt | T::Int | T::BigInt => match v {
            Value::VarChar(s) | Value::NVarChar(s) => {
                if to == &T::Bit {
                    let t = s.trim();
                    if t.eq_ignore_ascii_case("true") {
                        return Ok(Value::Bit(true));
                    }
                    if t.eq_ignore_ascii_case("false") {
                        return Ok(Value::Bit(false));
                    }
                }
                let i = parse_int_text(s).ok_or_else(|| conversion_failed(v, to))?;
                int_in_range(i, to)
            }
            Value::Float(_) | Value::Real(_) => {
                let f = v.as_f64().unwrap_or(0.0);
                if !f.is_finite() || f.abs() > 1e38 {
                    return Err(overflow_to(to));
                }
                int_in_range(f.trunc() as i128, to)
            }
            Value::Decimal(_) | Value::Money(_) | Value::SmallMoney(_) => {
                let d = v.as_decimal().unwrap_or(Decimal::new(0, 1, 0));
                // Money rounds to the integer; decimal truncates.
                let i = if matches!(v, Value::Decimal(_)) {
                    d.trunc_i128()
                } else {
                    d.rescale(38, 0).map(|x| x.mantissa).unwrap_or(0)
                };
                int_in_range(i, to)
            }
            Value::Binary(b) => {
                let n = match to {
                    T::Bit | T::TinyInt => 1,
                    T::SmallInt => 2,
                    T::Int => 4,
                    _ => 8,
                };
                let tail = &b[b.len().saturating_sub(n)..];
                let mut x: i128 = 0;
                for byte in tail {
                    x = (x << 8) | *byte as i128;
                }
                // Sign-extend from n bytes.
                let bits = 8 * n as u32;
                if n < 16 && tail.len() == n && x >= (1i128 << (bits - 1)) && to != &T::TinyInt {
                    x -= 1i128 << bits;
                }
                int_in_range(x, to)
            }
            Value::DateTime(dt) | Value::SmallDateTime(dt) => {
                let days = (dt.date() - base_1900()).num_days();
                int_in_range(days as i128, to)
            }
            other => match other.as_i64() {
                Some(i) => int_in_range(i as i128, to),
                None => Err(explicit_not_allowed(other, to)),
            },
        },
        T::Decimal { precision, scale, .. } => {
            let d = match v {
                Value::VarChar(s) | Value::NVarChar(s) => Decimal::parse(s).ok_or_else(|| {
                    SqlError::new(8114, 16, format!("Error converting data type {} to numeric.", v.type_name()))
                })?,
                Value::Float(_) | Value::Real(_) => return Decimal::from_f64(v.as_f64().unwrap_or(0.0), *precision, *scale).map(Value::Decimal),
                other => other.as_decimal().ok_or_else(|| explicit_not_allowed(other, to))?,
            };
            let r = d.rescale(*precision, *scale)?;
            Ok(Value::Decimal(Decimal { precision: *precision, scale: *scale, ..r }))
        }
        T::Money | T::SmallMoney => {
            let small = to == &T::SmallMoney;
            let d = match v {
                Value::VarChar(s) | Value::NVarChar(s) => {
                    let cleaned: String = s.trim().chars().filter(|c| *c != ',' && *c != '$').collect();
                    Decimal::parse(&cleaned).ok_or_else(|| conversion_failed_money(v, small))?
                }
                Value::Float(_) | Value::Real(_) => Decimal::from_f64(v.as_f64().unwrap_or(0.0), 38, 4)?,
                other => other.as_decimal().ok_or_else(|| explicit_not_allowed(other, to))?,
            };
            money_from_decimal(&d, small)
        }
        T::Float | T::Real => {
            let f = match v {
                Value::VarChar(s) | Value::NVarChar(s) => parse_float_text(s).ok_or_else(|| {
                    SqlError::new(8114, 16, format!("Error converting data type {} to float.", v.type_name()))
                })?,
                other => other.as_f64().ok_or_else(|| explicit_not_allowed(other, to))?,
            };
            if to == &T::Real {
                if f.is_finite() && f.abs() > f32::MAX as f64 {
                    return Err(overflow_to(to));
                }
                Ok(Value::Real(f as f32))
            } else {
                Ok(Value::Float(f))
            }
        }
        T::Binary(_) | T::VarBinary(_) | T::Image => {
            let bytes = match v {
                Value::VarChar(s) => {
                    if matches!(style, Some(1) | Some(2)) {
                        let h = if style == Some(1) { s.strip_prefix("0x").or(s.strip_prefix("0X")).unwrap_or(s) } else { s };
                        if !h.bytes().all(|b| b.is_ascii_hexdigit()) || h.len() % 2 == 1 {
                            return Err(conversion_failed(v, to));
                        }
                        crate::lexer::decode_hex(h)
                    } else {
                        s.as_bytes().to_vec()
                    }
                }
                Value::NVarChar(s) => s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
                Value::Binary(b) => b.clone(),
                Value::Bit(b) => vec![*b as u8],
                Value::TinyInt(x) => vec![*x],
                Value::SmallInt(x) => x.to_be_bytes().to_vec(),
                Value::Int(x) => x.to_be_bytes().to_vec(),
                Value::BigInt(x) => x.to_be_bytes().to_vec(),
                Value::Money(x) => x.to_be_bytes().to_vec(),
                Value::Guid(g) => guid_to_sql_bytes(g).to_vec(),
                other => return Err(explicit_not_allowed(other, to)),
            };
            Ok(Value::Binary(fit_binary(bytes, to)))
        }
        T::UniqueIdentifier => match v {
            Value::Guid(g) => Ok(Value::Guid(*g)),
            Value::VarChar(s) | Value::NVarChar(s) => parse_guid(s).map(Value::Guid).ok_or_else(|| {
                SqlError::new(8169, 16, "Conversion failed when converting from a character string to uniqueidentifier.")
            }),
            Value::Binary(b) => {
                let mut raw = [0u8; 16];
                for (i, byte) in b.iter().take(16).enumerate() {
                    raw[i] = *byte;
                }
                Ok(Value::Guid(guid_from_sql_bytes(&raw)))
            }
            other => Err(explicit_not_allowed(other, to)),
        },
        T::Date | T::Time(_) | T::DateTime | T::SmallDateTime | T::DateTime2(_) | T::DateTimeOffset(_) => {
            to_temporal(v, to, style)
        }
        T::Xml | T::SqlVariant | T::Text | T::NText => Ok(v.clone()),
        _ => Err(explicit_not_allowed(v, to)),
    }
}

fn conversion_failed_money(_v: &Value, small: bool) -> SqlError {
    SqlError::new(
        235,
        16,
        format!(
            "Cannot convert a char value to {}. The char value has incorrect syntax.",
            if small { "smallmoney" } else { "money" }
        ),
    )
}

fn explicit_not_allowed(v: &Value, to: &DataType) -> SqlError {
    SqlError::new(
        529,
        16,
        format!(
            "Explicit conversion from data type {} to {} is not allowed.",
            v.type_name(),
            to.base_name()
        ),
    )
}

fn fit_binary(mut bytes: Vec<u8>, to: &DataType) -> Vec<u8> {
    match to {
        DataType::Binary(n) => {
            bytes.resize(*n as usize, 0);
            bytes
        }
        DataType::VarBinary(Len::N(n)) => {
            bytes.truncate(*n as usize);
            bytes
        }
        _ => bytes,
    }
}

fn base_1900() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default()
}

fn guid_to_sql_bytes(g: &[u8; 16]) -> [u8; 16] {
    // SQL Server stores the first three groups little-endian.
    let mut b = *g;
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

fn guid_from_sql_bytes(b: &[u8; 16]) -> [u8; 16] {
    guid_to_sql_bytes(b)
}

pub fn parse_guid(s: &str) -> Option<[u8; 16]> {
    let t = s.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t);
    // SQL Server ignores characters after the 36th.
    let t = t.get(..36)?;
    let groups: Vec<&str> = t.split('-').collect();
    if groups.len() != 5
        || [8, 4, 4, 4, 12]
            .iter()
            .zip(&groups)
            .any(|(n, g)| g.len() != *n)
    {
        return None;
    }
    let hex: String = groups.concat();
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = crate::lexer::decode_hex(&hex);
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes);
    Some(out)
}

pub fn format_guid(g: &[u8; 16]) -> String {
    let h: String = g.iter().map(|b| format!("{:02X}", b)).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// FLOAT to text as CONVERT style 0 does: 6 significant digits, scientific when large or small.
pub fn format_float(f: f64, significant: usize) -> String {
    if f == 0.0 {
        return "0".into();
    }
    if !f.is_finite() {
        return f.to_string();
    }
    let exp = f.abs().log10().floor() as i32;
    if exp >= significant as i32 || exp < -4 {
        let mant = f / 10f64.powi(exp);
        let mut m = format!("{:.*}", significant - 1, mant);
        // Rounding may give 10.00000: renormalise.
        let (m2, exp) = if m.trim_start_matches('-').starts_with("10") {
            (format!("{:.*}", significant - 1, mant / 10.0), exp + 1)
        } else {
            (m.clone(), exp)
        };
        m = m2;
        if m.contains('.') {
            m = m.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        format!("{}e{}{:03}", m, if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let decimals = (significant as i32 - 1 - exp).max(0) as usize;
        let mut s = format!("{:.*}", decimals, f);
        if s.contains('.') {
            s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        s
    }
}

fn money_text(m: i64, decimals: usize) -> String {
    let d = Decimal::new(m as i128, 19, 4);
    let r = d.rescale(38, decimals as u8).unwrap_or(d);
    r.to_string()
}

fn frac_digits(ns: u32, p: u8) -> String {
    if p == 0 {
        return String::new();
    }
    let s = format!("{:09}", ns);
    format!(".{}", &s[..p as usize])
}

/// Rounds nanoseconds to `p` fractional digits (may carry into the next second).
fn round_time_ns(dt: NaiveDateTime, p: u8) -> NaiveDateTime {
    let unit = pow10(9 - p.min(9) as u32) as i64;
    let ns = dt.and_utc().timestamp_subsec_nanos() as i64;
    let rounded = (ns + unit / 2) / unit * unit;
    dt.checked_add_signed(TimeDelta::nanoseconds(rounded - ns))
        .unwrap_or(dt)
}

/// DATETIME keeps 1/300 s ticks: .000, .003, .007.
fn round_datetime(dt: NaiveDateTime) -> NaiveDateTime {
    let ns = dt.and_utc().timestamp_subsec_nanos() as i64;
    let ticks = (ns * 300 + 500_000_000) / 1_000_000_000;
    let new_ns = ticks * 1_000_000_000 / 300;
    // Displayed as milliseconds rounded: 1/300 s = 3.33 ms.
    let ms = (new_ns + 500_000) / 1_000_000;
    dt.checked_add_signed(TimeDelta::nanoseconds(ms * 1_000_000 - ns))
        .unwrap_or(dt)
}

fn round_smalldatetime(dt: NaiveDateTime) -> NaiveDateTime {
    let secs = dt.second() as i64;
    let ns = dt.and_utc().timestamp_subsec_nanos() as i64;
    let base = dt
        .checked_sub_signed(TimeDelta::seconds(secs) + TimeDelta::nanoseconds(ns))
        .unwrap_or(dt);
    if secs * 1_000_000_000 + ns >= 29_999_000_000 {
        base.checked_add_signed(TimeDelta::minutes(1))
            .unwrap_or(base)
    } else {
        base
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn ampm(dt: &NaiveDateTime, with_secs: bool, ms: bool) -> String {
    let h = dt.hour();
    let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
    let mut s = format!("{}:{:02}", h12, dt.minute());
    if with_secs {
        s.push_str(&format!(":{:02}", dt.second()));
    }
    if ms {
        s.push_str(&format!(":{:03}", dt.and_utc().timestamp_subsec_millis()));
    }
    s.push_str(if h < 12 { "AM" } else { "PM" });
    s
}

/// Date/time to text per CONVERT style (0/100 default, 101, 103, 108, 112, 120, 121, 126, 127, 23).
fn temporal_text(v: &Value, style: i64) -> Option<String> {
    let (dt, kind, p): (NaiveDateTime, u8, u8) = match v {
        Value::Date(d) => (d.and_hms_opt(0, 0, 0)?, 0, 0),
        Value::Time(t, p) => (NaiveDate::from_ymd_opt(1900, 1, 1)?.and_time(*t), 1, *p),
        Value::DateTime(dt) => (*dt, 2, 3),
        Value::SmallDateTime(dt) => (*dt, 3, 0),
        Value::DateTime2(dt, p) => (*dt, 4, *p),
        Value::DateTimeOffset(dto, p) => (dto.naive_local(), 5, *p),
        _ => return None,
    };
    let date = format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day());
    let ns = dt.and_utc().timestamp_subsec_nanos();
    let time_p = |p: u8| {
        format!(
            "{:02}:{:02}:{:02}{}",
            dt.hour(),
            dt.minute(),
            dt.second(),
            frac_digits(ns, p)
        )
    };
    let offset = match v {
        Value::DateTimeOffset(dto, _) => {
            let secs = dto.offset().local_minus_utc();
            format!(
                "{}{:02}:{:02}",
                if secs < 0 { '-' } else { '+' },
                secs.abs() / 3600,
                secs.abs() % 3600 / 60
            )
        }
        _ => String::new(),
    };
    let mon = MONTHS[dt.month0() as usize];
    Some(match style {
        0 | 100 => match kind {
            0 => date,
            1 => time_p(p),
            4 => format!("{} {}", date, time_p(p)),
            5 => format!("{} {} {}", date, time_p(p), offset),
            _ => format!(
                "{} {:>2} {} {:>7}",
                mon,
                dt.day(),
                dt.year(),
                ampm(&dt, false, false)
            ),
        },
        101 => format!("{:02}/{:02}/{:04}", dt.month(), dt.day(), dt.year()),
        1 => format!("{:02}/{:02}/{:02}", dt.month(), dt.day(), dt.year() % 100),
        103 => format!("{:02}/{:02}/{:04}", dt.day(), dt.month(), dt.year()),
        3 => format!("{:02}/{:02}/{:02}", dt.day(), dt.month(), dt.year() % 100),
        104 => format!("{:02}.{:02}.{:04}", dt.day(), dt.month(), dt.year()),
        108 | 8 | 24 => format!("{:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second()),
        112 => format!("{:04}{:02}{:02}", dt.year(), dt.month(), dt.day()),
        12 => format!("{:02}{:02}{:02}", dt.year() % 100, dt.month(), dt.day()),
        23 => date,
        20 | 120 => match kind {
            0 => date,
            1 => format!("{:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second()),
            _ => format!(
                "{} {:02}:{:02}:{:02}",
                date,
                dt.hour(),
                dt.minute(),
                dt.second()
            ),
        },
        21 | 25 | 121 => {
            let fp = if kind == 2 || kind == 3 { 3 } else { p };
            match kind {
                0 => format!("{} 00:00:00.000", date),
                1 => time_p(fp),
                5 => format!("{} {} {}", date, time_p(fp), offset),
                _ => format!("{} {}", date, time_p(fp)),
            }
        }
        126 | 127 => {
            let fp = if kind == 2 {
                if ns == 0 {
                    0
                } else {
                    3
                }
            } else if kind == 3 {
                0
            } else {
                p
            };
            let z = if style == 127 && kind == 5 {
                "Z".to_string()
            } else {
                offset.clone()
            };
            match kind {
                0 => date,
                1 => time_p(fp),
                5 if style == 127 => {
                    let utc = match v {
                        Value::DateTimeOffset(dto, _) => dto.naive_utc(),
                        _ => dt,
                    };
                    format!(
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{}",
                        utc.year(),
                        utc.month(),
                        utc.day(),
                        utc.hour(),
                        utc.minute(),
                        utc.second(),
                        frac_digits(utc.and_utc().timestamp_subsec_nanos(), fp),
                        z
                    )
                }
                _ => format!(
                    "{}T{}{}",
                    date,
                    time_p(fp),
                    if kind == 5 { offset } else { String::new() }
                ),
            }
        }
        9 | 109 => format!(
            "{} {:>2} {} {:>14}",
            mon,
            dt.day(),
            dt.year(),
            ampm(&dt, true, true)
        ),
        13 | 113 => format!(
            "{:02} {} {:04} {:02}:{:02}:{:02}:{:03}",
            dt.day(),
            mon,
            dt.year(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.and_utc().timestamp_subsec_millis()
        ),
        _ => return None,
    })
}

fn to_string_type(v: &Value, to: &DataType, style: Option<i64>) -> Result<Value> {
    let unicode = to.is_unicode();
    let text = match v {
        Value::VarChar(s) | Value::NVarChar(s) => s.clone(),
        Value::Bit(b) => (if *b { "1" } else { "0" }).to_string(),
        Value::TinyInt(_) | Value::SmallInt(_) | Value::Int(_) | Value::BigInt(_) => {
            let s = v.as_i64().unwrap_or(0).to_string();
            // An integer that does not fit a short char type becomes '*' (nchar types raise 8115).
            if let Some(n) = to.max_len() {
                if s.len() > n as usize {
                    if unicode {
                        return Err(overflow_to(to));
                    }
                    return Ok(Value::VarChar("*".into()));
                }
            }
            s
        }
        Value::Decimal(d) => {
            let s = d.to_string();
            if let Some(n) = to.max_len() {
                if s.len() > n as usize {
                    return Err(SqlError::new(
                        8115,
                        16,
                        format!(
                            "Arithmetic overflow error converting numeric to data type {}.",
                            to.base_name()
                        ),
                    ));
                }
            }
            s
        }
        Value::Money(m) | Value::SmallMoney(m) => match style.unwrap_or(0) {
            2 => money_text(*m, 4),
            1 => {
                let s = money_text(*m, 2);
                let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
                let neg = int.starts_with('-');
                let digits = int.trim_start_matches('-');
                let mut grouped = String::new();
                for (i, c) in digits.chars().enumerate() {
                    if i > 0 && (digits.len() - i) % 3 == 0 {
                        grouped.push(',');
                    }
                    grouped.push(c);
                }
                format!("{}{}.{}", if neg { "-" } else { "" }, grouped, frac)
            }
            _ => money_text(*m, 2),
        },
        Value::Float(f) => match style.unwrap_or(0) {
            1 => format!("{:.7e}", f),
            2 => format!("{:.15e}", f),
            3 => format!("{}", f),
            _ => format_float(*f, 6),
        },
        Value::Real(f) => format_float(*f as f64, 6),
        Value::Binary(b) => match style.unwrap_or(0) {
            1 => format!(
                "0x{}",
                b.iter().map(|x| format!("{:02X}", x)).collect::<String>()
            ),
            2 => b.iter().map(|x| format!("{:02X}", x)).collect(),
            _ => {
                if unicode {
                    let units: Vec<u16> = b
                        .chunks(2)
                        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                        .collect();
                    String::from_utf16_lossy(&units)
                } else {
                    b.iter().map(|x| *x as char).collect()
                }
            }
        },
        Value::Guid(g) => format_guid(g),
        Value::Null => return Ok(Value::Null),
        other => {
            let st = style.unwrap_or(0);
            temporal_text(other, st).ok_or_else(|| {
                SqlError::new(281, 16, format!("{} is not a valid style number when converting from {} to a character string.", st, other.type_name()))
            })?
        }
    };
    let text = fit_text(text, to);
    Ok(if unicode {
        Value::NVarChar(text)
    } else {
        Value::VarChar(text)
    })
}

/// CAST/assignment to a declared length: truncates (silently, as CAST and variables do) and pads CHAR(n).
pub fn fit_text(mut text: String, to: &DataType) -> String {
    match to {
        DataType::Char(n) | DataType::NChar(n) => {
            let count = text.chars().count();
            if count > *n as usize {
                text = text.chars().take(*n as usize).collect();
            } else {
                text.extend(std::iter::repeat_n(' ', *n as usize - count));
            }
            text
        }
        DataType::VarChar(Len::N(n)) | DataType::NVarChar(Len::N(n)) => {
            if text.chars().count() > *n as usize {
                text = text.chars().take(*n as usize).collect();
            }
            text
        }
        DataType::SysName => text.chars().take(128).collect(),
        _ => text,
    }
}

fn conversion_failed_datetime() -> SqlError {
    SqlError::new(
        241,
        16,
        "Conversion failed when converting date and/or time from character string.",
    )
}

fn parse_month(s: &str) -> Option<u32> {
    let l = s.to_ascii_lowercase();
    let full = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    full.iter()
        .position(|m| m.starts_with(&l) && l.len() >= 3)
        .map(|i| i as u32 + 1)
}

/// Parses the textual date/time forms SQL Server accepts most often (dateformat mdy).
pub fn parse_datetime_text(s: &str) -> Option<(NaiveDateTime, Option<FixedOffset>, bool)> {
    parse_datetime_text_ordered(s, false)
}

/// As [`parse_datetime_text`], with day before month in d/m/y forms (`SET DATEFORMAT dmy`, CONVERT styles
/// 3/103, 4/104, 5/105).
pub fn parse_datetime_text_ordered(
    s: &str,
    day_first: bool,
) -> Option<(NaiveDateTime, Option<FixedOffset>, bool)> {
    let t = s.trim();
    if t.is_empty() {
        return Some((base_1900().and_hms_opt(0, 0, 0)?, None, false));
    }
    // Split off a trailing offset like +02:00, -05:30 or Z.
    let mut offset = None;
    let mut body = t.to_string();
    if let Some(stripped) = body.strip_suffix('Z').or_else(|| body.strip_suffix('z')) {
        offset = FixedOffset::east_opt(0);
        body = stripped.to_string();
    } else if body.len() > 6
        && body.is_char_boundary(body.len() - 6)
        && body[body.len() - 6..].is_ascii()
    {
        let tail = &body[body.len() - 6..];
        let b = tail.as_bytes();
        if (b[0] == b'+' || b[0] == b'-') && b[3] == b':' && body.contains(':') {
            let h: i32 = tail[1..3].parse().ok()?;
            let m: i32 = tail[4..6].parse().ok()?;
            let secs = (h * 3600 + m * 60) * if b[0] == b'-' { -1 } else { 1 };
            offset = FixedOffset::east_opt(secs);
            body = body[..body.len() - 6].trim_end().to_string();
        }
    }
    // Date and time parts separated by 'T' or space.
    let (date_part, time_part) = if let Some(i) = body.find('T') {
        (body[..i].to_string(), Some(body[i + 1..].to_string()))
    } else {
        let parts: Vec<&str> = body.split_whitespace().collect();
        // "Nov 27 2026 1:22PM"
        if parts.len() >= 3 && parse_month(parts[0]).is_some() {
            let m = parse_month(parts[0])?;
            let d: u32 = parts[1].trim_end_matches(',').parse().ok()?;
            let y: i32 = parts[2].parse().ok()?;
            let date = NaiveDate::from_ymd_opt(y, m, d)?;
            let time = if parts.len() > 3 {
                parse_time_text(&parts[3..].join(" "))?
            } else {
                NaiveTime::MIN
            };
            return Some((date.and_time(time), offset, false));
        }
        // "27 Nov 2026 13:22" (styles 106/113)
        if parts.len() >= 3 && parse_month(parts[1]).is_some() {
            let d: u32 = parts[0].parse().ok()?;
            let m = parse_month(parts[1])?;
            let y: i32 = parts[2].parse().ok()?;
            let date = NaiveDate::from_ymd_opt(y, m, d)?;
            let time = if parts.len() > 3 {
                parse_time_text(&parts[3..].join(" "))?
            } else {
                NaiveTime::MIN
            };
            return Some((date.and_time(time), offset, false));
        }
        if parts.len() >= 2 && parts[0].contains(['-', '/', '.'])
            || parts.len() >= 2 && parts[0].len() == 8
        {
            (parts[0].to_string(), Some(parts[1..].join(" ")))
        } else if parts.len() == 1 && parts[0].contains(':') {
            return Some((
                base_1900().and_time(parse_time_text(parts[0])?),
                offset,
                true,
            ));
        } else {
            (body.clone(), None)
        }
    };
    let date = parse_date_text(&date_part, day_first)?;
    let time = match time_part {
        Some(tp) if !tp.trim().is_empty() => parse_time_text(tp.trim())?,
        _ => NaiveTime::MIN,
    };
    Some((date.and_time(time), offset, false))
}

fn parse_date_text(s: &str, day_first: bool) -> Option<NaiveDate> {
    let s = s.trim();
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::from_ymd_opt(
            s[0..4].parse().ok()?,
            s[4..6].parse().ok()?,
            s[6..8].parse().ok()?,
        );
    }
    let sep = if s.contains('-') {
        '-'
    } else if s.contains('/') {
        '/'
    } else if s.contains('.') {
        '.'
    } else {
        return None;
    };
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() != 3 {
        return None;
    }
    let nums: Vec<i64> = parts
        .iter()
        .map(|p| p.trim().parse::<i64>().ok())
        .collect::<Option<Vec<_>>>()?;
    let (y, m, d) = if parts[0].len() == 4 {
        (nums[0], nums[1], nums[2])
    } else {
        // mdy is the session default for us_english; dmy for the d/m/y styles.
        let y = if parts[2].len() <= 2 {
            2000 + nums[2] - if nums[2] >= 50 { 100 } else { 0 }
        } else {
            nums[2]
        };
        if day_first {
            (y, nums[1], nums[0])
        } else {
            (y, nums[0], nums[1])
        }
    };
    NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
}

fn parse_time_text(s: &str) -> Option<NaiveTime> {
    let mut t = s.trim().to_ascii_uppercase();
    let mut pm = None;
    if let Some(x) = t.strip_suffix("PM") {
        pm = Some(true);
        t = x.trim().to_string();
    } else if let Some(x) = t.strip_suffix("AM") {
        pm = Some(false);
        t = x.trim().to_string();
    }
    let (hms, frac) = match t.split_once('.') {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (t.clone(), String::new()),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut h: u32 = parts[0].trim().parse().ok()?;
    let m: u32 = parts.get(1).map(|x| x.parse().ok()).unwrap_or(Some(0))?;
    let sec: u32 = parts.get(2).map(|x| x.parse().ok()).unwrap_or(Some(0))?;
    let mut ns: u32 = 0;
    let frac_src = if parts.len() == 4 {
        parts[3].to_string()
    } else {
        frac
    };
    if !frac_src.is_empty() {
        if frac_src.len() > 9 || !frac_src.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let padded = format!("{:0<9}", frac_src);
        ns = padded.parse().ok()?;
    }
    if let Some(p) = pm {
        if h > 12 {
            return None;
        }
        if p && h < 12 {
            h += 12;
        } else if !p && h == 12 {
            h = 0;
        }
    }
    NaiveTime::from_hms_nano_opt(h, m, sec, ns)
}

fn to_temporal(v: &Value, to: &DataType, style: Option<i64>) -> Result<Value> {
    use DataType as T;
    let day_first = matches!(style, Some(3 | 103 | 4 | 104 | 5 | 105 | 13 | 113 | 131));
    let (dt, off): (NaiveDateTime, Option<FixedOffset>) = match v {
        Value::VarChar(s) | Value::NVarChar(s) => {
            let (dt, off, _) =
                parse_datetime_text_ordered(s, day_first).ok_or_else(conversion_failed_datetime)?;
            (dt, off)
        }
        Value::Date(d) => (d.and_hms_opt(0, 0, 0).unwrap_or_default(), None),
        Value::Time(t, _) => {
            if matches!(to, T::Date) {
                return Err(explicit_not_allowed(v, to));
            }
            (base_1900().and_time(*t), None)
        }
        Value::DateTime(dt) | Value::SmallDateTime(dt) | Value::DateTime2(dt, _) => (*dt, None),
        Value::DateTimeOffset(dto, _) => (dto.naive_local(), Some(*dto.offset())),
        other => {
            // Numbers convert to DATETIME as days since 1900-01-01.
            if matches!(to, T::DateTime | T::SmallDateTime) {
                if let Some(f) = other.as_f64() {
                    let whole = f.floor();
                    let frac_ns = ((f - whole) * 86_400e9).round() as i64;
                    // Out-of-range day counts are an overflow, never a panic.
                    let days = if whole.abs() < 4_000_000.0 {
                        TimeDelta::try_days(whole as i64)
                    } else {
                        None
                    };
                    let d = days
                        .and_then(|dd| {
                            base_1900()
                                .and_hms_opt(0, 0, 0)
                                .unwrap_or_default()
                                .checked_add_signed(dd)
                        })
                        .and_then(|d| d.checked_add_signed(TimeDelta::nanoseconds(frac_ns)))
                        .ok_or_else(|| overflow_to(to))?;
                    return Ok(if matches!(to, T::DateTime) {
                        Value::DateTime(round_datetime(d))
                    } else {
                        Value::SmallDateTime(round_smalldatetime(d))
                    });
                }
            }
            return Err(explicit_not_allowed(other, to));
        }
    };
    Ok(match to {
        T::Date => Value::Date(dt.date()),
        T::Time(p) => Value::Time(round_time_ns(dt, *p).time(), *p),
        T::DateTime => {
            if dt.year() < 1753 {
                return Err(SqlError::new(
                    242,
                    16,
                    "The conversion of a varchar data type to a datetime data type resulted in an out-of-range value.",
                ));
            }
            Value::DateTime(round_datetime(dt))
        }
        T::SmallDateTime => {
            if dt.year() < 1900 || dt.year() > 2079 {
                return Err(SqlError::new(
                    242,
                    16,
                    "The conversion of a varchar data type to a smalldatetime data type resulted in an out-of-range value.",
                ));
            }
            Value::SmallDateTime(round_smalldatetime(dt))
        }
        T::DateTime2(p) => Value::DateTime2(round_time_ns(dt, *p), *p),
        T::DateTimeOffset(p) => {
            let o =
                off.unwrap_or_else(|| FixedOffset::east_opt(0).unwrap_or_else(unreachable_offset));
            let local = round_time_ns(dt, *p);
            let dto = local
                .and_local_timezone(o)
                .single()
                .ok_or_else(conversion_failed_datetime)?;
            Value::DateTimeOffset(dto, *p)
        }
        _ => return Err(explicit_not_allowed(v, to)),
    })
}

fn unreachable_offset() -> FixedOffset {
    // east_opt(0) never fails; keep a total fallback without panicking.
    FixedOffset::west_opt(0).expect("zero offset is valid")
}

/// Compares two non-NULL values under T-SQL rules: convert to the higher-precedence type; strings compare
/// case-insensitively with trailing spaces ignored (SQL_Latin1_General_CP1_CI_AS).
pub fn compare(a: &Value, b: &Value) -> Result<Option<Ordering>> {
    if a.is_null() || b.is_null() {
        return Ok(None);
    }
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        return Ok(Some(collate_cmp(x, y)));
    }
    let (ta, tb) = (a.data_type(), b.data_type());
    let (ta, tb) = match (ta, tb) {
        (Some(x), Some(y)) => (x, y),
        _ => return Ok(None),
    };
    let target = if ta.precedence() >= tb.precedence() {
        ta
    } else {
        tb
    };
    let a2 = if ta == target {
        a.clone()
    } else {
        implicit_convert(a, &target)?
    };
    let b2 = if tb == target {
        b.clone()
    } else {
        implicit_convert(b, &target)?
    };
    Ok(Some(match (&a2, &b2) {
        (Value::Float(_) | Value::Real(_), _) | (_, Value::Float(_) | Value::Real(_)) => a2
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&b2.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (x, y) if x.as_decimal().is_some() && y.as_decimal().is_some() => x
            .as_decimal()
            .unwrap_or(Decimal::new(0, 1, 0))
            .cmp_value(&y.as_decimal().unwrap_or(Decimal::new(0, 1, 0))),
        (Value::Binary(x), Value::Binary(y)) => x.cmp(y),
        (Value::Guid(x), Value::Guid(y)) => guid_order(x).cmp(&guid_order(y)),
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::Time(x, _), Value::Time(y, _)) => x.cmp(y),
        (Value::DateTimeOffset(x, _), Value::DateTimeOffset(y, _)) => x.cmp(y),
        (x, y) => match (naive(x), naive(y)) {
            (Some(p), Some(q)) => p.cmp(&q),
            _ => return Ok(None),
        },
    }))
}

fn naive(v: &Value) -> Option<NaiveDateTime> {
    match v {
        Value::DateTime(d) | Value::SmallDateTime(d) | Value::DateTime2(d, _) => Some(*d),
        Value::Date(d) => d.and_hms_opt(0, 0, 0),
        _ => None,
    }
}

/// SQL Server orders GUIDs by byte groups starting from the last six bytes.
fn guid_order(g: &[u8; 16]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..6].copy_from_slice(&g[10..16]);
    k[6..8].copy_from_slice(&g[8..10]);
    k[8..10].copy_from_slice(&g[6..8]);
    k[10..12].copy_from_slice(&g[4..6]);
    k[12..16].copy_from_slice(&g[0..4]);
    k
}

/// Case-insensitive, trailing-space-insensitive comparison (the default collation).
pub fn collate_cmp(a: &str, b: &str) -> Ordering {
    let a = a.trim_end_matches(' ');
    let b = b.trim_end_matches(' ');
    let mut ai = a.chars().flat_map(|c| c.to_lowercase());
    let mut bi = b.chars().flat_map(|c| c.to_lowercase());
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(&y) {
                Ordering::Equal => continue,
                o => return o,
            },
        }
    }
}

/// Implicit conversion (as in `1 + '2'` or a comparison): CAST plus the operand type clashes (206).
pub fn implicit_convert(v: &Value, to: &DataType) -> Result<Value> {
    if let Some(t) = v.data_type() {
        if t.is_temporal()
            && to.is_numeric()
            && !matches!(t, DataType::DateTime | DataType::SmallDateTime)
        {
            return Err(SqlError::new(
                206,
                16,
                format!(
                    "Operand type clash: {} is incompatible with {}",
                    t.base_name(),
                    to.base_name()
                ),
            ));
        }
        if (t.is_temporal() && *to == DataType::UniqueIdentifier)
            || (t == DataType::UniqueIdentifier && (to.is_numeric() || to.is_temporal()))
        {
            return Err(SqlError::new(
                206,
                16,
                format!(
                    "Operand type clash: {} is incompatible with {}",
                    t.base_name(),
                    to.base_name()
                ),
            ));
        }
    }
    // Failures keep SQL Server's numbers: 245 for integer targets, 8114 for numeric/float, 235 for money.
    convert(v, to, None)
}

/// Converts for assignment to a variable or parameter of a declared type (strings truncate silently).
pub fn assign(v: &Value, ty: &DataType) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    implicit_convert(v, ty)
}

/// Converts for INSERT/UPDATE into a column: string truncation is an error (2628 names the column).
pub fn coerce_for_column(v: &Value, ty: &DataType, table: &str, column: &str) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if let (Some(s), Some(n)) = (v.as_str(), ty.max_len()) {
        if ty.is_string() && s.trim_end_matches(' ').chars().count() > n as usize {
            let truncated: String = s.chars().take(n as usize).collect();
            return Err(SqlError::new(
                2628,
                16,
                format!(
                    "String or binary data would be truncated in table '{}', column '{}'. Truncated value: '{}'.",
                    table, column, truncated
                ),
            ));
        }
    }
    if let (Value::Binary(b), Some(n)) = (v, ty.max_len()) {
        if ty.is_binary() && b.len() > n as usize {
            return Err(SqlError::new(
                2628,
                16,
                format!("String or binary data would be truncated in table '{}', column '{}'. Truncated value: ''.", table, column),
            ));
        }
    }
    implicit_convert(v, ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts() {
        let s = |x: &str| Value::VarChar(x.into());
        assert_eq!(
            convert(&s(" 12 "), &DataType::Int, None).unwrap(),
            Value::Int(12)
        );
        assert_eq!(
            convert(&s("1.5"), &DataType::Int, None).unwrap_err().number,
            245
        );
        assert_eq!(
            convert(&Value::Int(300), &DataType::TinyInt, None)
                .unwrap_err()
                .number,
            8115
        );
        assert_eq!(
            convert(
                &s("12.345"),
                &DataType::Decimal {
                    precision: 5,
                    scale: 2,
                    numeric: false
                },
                None
            )
            .unwrap(),
            Value::Decimal(Decimal::new(1235, 5, 2))
        );
        assert_eq!(
            convert(&Value::Money(12_3456), &DataType::VarChar(Len::N(30)), None).unwrap(),
            s("12.35")
        );
        assert_eq!(
            convert(&Value::Int(123), &DataType::VarChar(Len::N(2)), None).unwrap(),
            s("*")
        );
        assert_eq!(
            convert(
                &Value::Float(1234567.0),
                &DataType::VarChar(Len::N(30)),
                None
            )
            .unwrap(),
            s("1.23457e+006")
        );
        assert_eq!(
            convert(&Value::Float(0.5), &DataType::VarChar(Len::N(30)), None).unwrap(),
            s("0.5")
        );
        let dt = convert(&s("2026-11-27 13:05:09.123"), &DataType::DateTime, None).unwrap();
        assert_eq!(
            convert(&dt, &DataType::VarChar(Len::N(30)), Some(121)).unwrap(),
            s("2026-11-27 13:05:09.123")
        );
        assert_eq!(
            convert(&dt, &DataType::VarChar(Len::N(30)), Some(120)).unwrap(),
            s("2026-11-27 13:05:09")
        );
        assert_eq!(
            convert(&dt, &DataType::VarChar(Len::N(30)), Some(126)).unwrap(),
            s("2026-11-27T13:05:09.123")
        );
        assert_eq!(
            convert(&dt, &DataType::VarChar(Len::N(30)), None).unwrap(),
            s("Nov 27 2026  1:05PM")
        );
        let d = convert(&s("03/30/2025"), &DataType::Date, None).unwrap();
        assert_eq!(
            convert(&s("30/03/2025"), &DataType::Date, Some(103)).unwrap(),
            d
        );
        assert_eq!(
            convert(&s("30.03.2025"), &DataType::Date, Some(104)).unwrap(),
            d
        );
        assert_eq!(
            convert(&s("30 Mar 2025"), &DataType::Date, None).unwrap(),
            d
        );
        assert_eq!(
            d,
            Value::Date(NaiveDate::from_ymd_opt(2025, 3, 30).unwrap())
        );
        assert_eq!(
            convert(&s("not a date"), &DataType::Date, None)
                .unwrap_err()
                .number,
            241
        );
        let g = convert(
            &s("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
            &DataType::UniqueIdentifier,
            None,
        )
        .unwrap();
        assert_eq!(g.to_text().unwrap(), "6F9619FF-8B86-D011-B42D-00C04FC964FF");
        assert_eq!(
            convert(
                &Value::Binary(vec![0x41, 0x42]),
                &DataType::VarChar(Len::N(10)),
                None
            )
            .unwrap(),
            s("AB")
        );
        assert_eq!(
            convert(
                &Value::Binary(vec![0xAB]),
                &DataType::VarChar(Len::N(10)),
                Some(1)
            )
            .unwrap(),
            s("0xAB")
        );
    }

    #[test]
    fn collation_compare() {
        assert_eq!(collate_cmp("abc ", "ABC"), Ordering::Equal);
        assert_eq!(
            compare(&Value::VarChar("a".into()), &Value::NVarChar("A  ".into())).unwrap(),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(&Value::Int(2), &Value::VarChar("10".into())).unwrap(),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(&Value::Int(2), &Value::VarChar("x".into()))
                .unwrap_err()
                .number,
            245
        );
    }

    #[test]
    fn column_truncation() {
        let e = coerce_for_column(
            &Value::VarChar("abcdef".into()),
            &DataType::VarChar(Len::N(3)),
            "t",
            "c",
        )
        .unwrap_err();
        assert_eq!(e.number, 2628);
        assert_eq!(
            coerce_for_column(
                &Value::VarChar("ab   ".into()),
                &DataType::VarChar(Len::N(3)),
                "t",
                "c"
            )
            .unwrap(),
            Value::VarChar("ab ".into())
        );
    }
}
