//! Conversions between the three value worlds: T-SQL values (tsql), SQLite's stored values, and TDS wire values.

use rusqlite::types::Value as Sqlite;
use tds::{SqlType, SqlValue};
use tsql::storage::{from_stored, to_stored, Stored};
use tsql::types::Len;
use tsql::{DataType, SqlError, Value};

pub fn to_sqlite(v: &Value) -> Sqlite {
    match to_stored(v) {
        Stored::Null => Sqlite::Null,
        Stored::Integer(i) => Sqlite::Integer(i),
        Stored::Real(f) => Sqlite::Real(f),
        Stored::Text(t) => Sqlite::Text(t),
        Stored::Blob(b) => Sqlite::Blob(b),
    }
}

pub fn from_sqlite(v: &Sqlite, ty: Option<&DataType>) -> Result<Value, SqlError> {
    let s = match v {
        Sqlite::Null => Stored::Null,
        Sqlite::Integer(i) => Stored::Integer(*i),
        Sqlite::Real(f) => Stored::Real(*f),
        Sqlite::Text(t) => Stored::Text(t.clone()),
        Sqlite::Blob(b) => Stored::Blob(b.clone()),
    };
    from_stored(&s, ty)
}

fn len16(l: &Len, unicode: bool) -> Option<u16> {
    match l {
        Len::Max => None,
        Len::N(n) if (unicode && *n <= 4000) || (!unicode && *n <= 8000) => Some(*n as u16),
        Len::N(_) => None,
    }
}

/// The TDS column type announced for a T-SQL type.
pub fn wire_type(t: &DataType) -> SqlType {
    match t {
        DataType::Bit => SqlType::Bit,
        DataType::TinyInt => SqlType::TinyInt,
        DataType::SmallInt => SqlType::SmallInt,
        DataType::Int => SqlType::Int,
        DataType::BigInt => SqlType::BigInt,
        DataType::Decimal {
            precision, scale, ..
        } => SqlType::Decimal {
            precision: *precision,
            scale: *scale,
        },
        DataType::Money => SqlType::Money,
        DataType::SmallMoney => SqlType::SmallMoney,
        DataType::Float => SqlType::Float,
        DataType::Real => SqlType::Real,
        DataType::Char(n) if *n <= 8000 => SqlType::Char(*n as u16),
        DataType::NChar(n) if *n <= 4000 => SqlType::NChar(*n as u16),
        DataType::Char(_) | DataType::Text => SqlType::VarChar(None),
        DataType::NChar(_) | DataType::NText | DataType::Xml | DataType::SqlVariant => {
            SqlType::NVarChar(None)
        }
        DataType::VarChar(l) => SqlType::VarChar(len16(l, false)),
        DataType::NVarChar(l) => SqlType::NVarChar(len16(l, true)),
        DataType::SysName => SqlType::NVarChar(Some(128)),
        DataType::Binary(n) if *n <= 8000 => SqlType::Binary(*n as u16),
        DataType::Binary(_) | DataType::Image => SqlType::VarBinary(None),
        DataType::VarBinary(l) => SqlType::VarBinary(len16(l, false)),
        DataType::Date => SqlType::Date,
        DataType::Time(s) => SqlType::Time { scale: *s },
        DataType::DateTime => SqlType::DateTime,
        DataType::SmallDateTime => SqlType::SmallDateTime,
        DataType::DateTime2(s) => SqlType::DateTime2 { scale: *s },
        DataType::DateTimeOffset(s) => SqlType::DateTimeOffset { scale: *s },
        DataType::UniqueIdentifier => SqlType::Guid,
    }
}

/// A column type guessed from a value when the translator could not type the expression.
pub fn natural_type(v: &Value) -> DataType {
    v.data_type().unwrap_or(DataType::NVarChar(Len::Max))
}

/// A T-SQL value converted to the column's type and then to the wire.
pub fn wire_value(v: &Value, t: &DataType) -> Result<SqlValue, SqlError> {
    if v.is_null() {
        return Ok(SqlValue::Null);
    }
    let v = tsql::value::convert(v, t, None)?;
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bit(b) => SqlValue::Bit(b),
        Value::TinyInt(x) => SqlValue::TinyInt(x),
        Value::SmallInt(x) => SqlValue::SmallInt(x),
        Value::Int(x) => SqlValue::Int(x),
        Value::BigInt(x) => SqlValue::BigInt(x),
        Value::Decimal(d) => {
            // convert() above already rescaled the value to the column's precision and scale.
            let precision = match t {
                DataType::Decimal { precision, .. } => *precision,
                _ => 38,
            };
            SqlValue::Decimal(tds::Decimal {
                value: d.mantissa,
                precision,
                scale: d.scale,
            })
        }
        Value::Money(m) | Value::SmallMoney(m) => SqlValue::Money(m),
        Value::Float(f) => SqlValue::Float(f),
        Value::Real(f) => SqlValue::Real(f),
        Value::VarChar(s) => match t {
            DataType::NVarChar(_) | DataType::NChar(_) | DataType::SysName | DataType::NText => {
                SqlValue::NVarChar(s)
            }
            _ => SqlValue::VarChar(s),
        },
        Value::NVarChar(s) => match t {
            DataType::VarChar(_) | DataType::Char(_) | DataType::Text => SqlValue::VarChar(s),
            _ => SqlValue::NVarChar(s),
        },
        Value::Binary(b) => SqlValue::VarBinary(b),
        Value::Date(d) => SqlValue::Date(d.into()),
        Value::Time(t, _) => SqlValue::Time(t.into()),
        Value::DateTime(d) => SqlValue::DateTime(d.into()),
        Value::SmallDateTime(d) => SqlValue::DateTime(d.into()),
        Value::DateTime2(d, _) => SqlValue::DateTime2(d.into()),
        Value::DateTimeOffset(d, _) => SqlValue::DateTimeOffset(d.into()),
        Value::Guid(g) => SqlValue::Guid(g),
    })
}

/// A parameter value from the wire as a T-SQL value (RPC parameters).
pub fn from_wire(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Bit(b) => Value::Bit(*b),
        SqlValue::TinyInt(x) => Value::TinyInt(*x),
        SqlValue::SmallInt(x) => Value::SmallInt(*x),
        SqlValue::Int(x) => Value::Int(*x),
        SqlValue::BigInt(x) => Value::BigInt(*x),
        SqlValue::Real(x) => Value::Real(*x),
        SqlValue::Float(x) => Value::Float(*x),
        SqlValue::Decimal(d) => tsql::value::convert(
            &Value::VarChar(d.to_string()),
            &DataType::Decimal {
                precision: d.precision,
                scale: d.scale,
                numeric: false,
            },
            None,
        )
        .unwrap_or(Value::Null),
        SqlValue::Money(m) => Value::Money(*m),
        SqlValue::NVarChar(s) => Value::NVarChar(s.clone()),
        SqlValue::VarChar(s) => Value::VarChar(s.clone()),
        SqlValue::VarBinary(b) => Value::Binary(b.clone()),
        SqlValue::Guid(g) => Value::Guid(*g),
        SqlValue::Date(d) => chrono::NaiveDate::try_from(*d)
            .map(Value::Date)
            .unwrap_or(Value::Null),
        SqlValue::Time(t) => Value::Time((*t).into(), 7),
        SqlValue::DateTime(d) => chrono::NaiveDateTime::try_from(*d)
            .map(Value::DateTime)
            .unwrap_or(Value::Null),
        SqlValue::DateTime2(d) => chrono::NaiveDateTime::try_from(*d)
            .map(|d| Value::DateTime2(d, 7))
            .unwrap_or(Value::Null),
        SqlValue::DateTimeOffset(d) => chrono::DateTime::<chrono::FixedOffset>::try_from(*d)
            .map(|d| Value::DateTimeOffset(d, 7))
            .unwrap_or(Value::Null),
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}

/// The T-SQL type of an RPC parameter as the client declared it.
pub fn type_of_wire(t: &SqlType) -> DataType {
    match t {
        SqlType::Bit => DataType::Bit,
        SqlType::TinyInt => DataType::TinyInt,
        SqlType::SmallInt => DataType::SmallInt,
        SqlType::Int => DataType::Int,
        SqlType::BigInt => DataType::BigInt,
        SqlType::Real => DataType::Real,
        SqlType::Float => DataType::Float,
        SqlType::Decimal { precision, scale } => DataType::Decimal {
            precision: *precision,
            scale: *scale,
            numeric: false,
        },
        SqlType::Money => DataType::Money,
        SqlType::SmallMoney => DataType::SmallMoney,
        SqlType::NVarChar(n) => DataType::NVarChar(n.map(|n| Len::N(n as u32)).unwrap_or(Len::Max)),
        SqlType::NChar(n) => DataType::NChar(*n as u32),
        SqlType::VarChar(n) => DataType::VarChar(n.map(|n| Len::N(n as u32)).unwrap_or(Len::Max)),
        SqlType::Char(n) => DataType::Char(*n as u32),
        SqlType::VarBinary(n) => {
            DataType::VarBinary(n.map(|n| Len::N(n as u32)).unwrap_or(Len::Max))
        }
        SqlType::Binary(n) => DataType::Binary(*n as u32),
        SqlType::Guid => DataType::UniqueIdentifier,
        SqlType::Date => DataType::Date,
        SqlType::Time { scale } => DataType::Time(*scale),
        SqlType::DateTime => DataType::DateTime,
        SqlType::SmallDateTime => DataType::SmallDateTime,
        SqlType::DateTime2 { scale } => DataType::DateTime2(*scale),
        SqlType::DateTimeOffset { scale } => DataType::DateTimeOffset(*scale),
        _ => DataType::NVarChar(Len::Max),
    }
}
