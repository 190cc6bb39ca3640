//! The stored representation of T-SQL values in SQLite, and the pure `tsql_*` SQL functions that translated
//! statements call. The engine registers every name in [`PURE_FUNCTIONS`] with [`call_function`] and converts
//! SQLite values to and from [`Stored`]; this crate stays free of any SQLite dependency.
//!
//! Canonical forms (one per type, so equal values are equal bytes and text order is value order where possible):
//! integers and BIT as INTEGER; FLOAT/REAL as REAL; DECIMAL/NUMERIC/MONEY as TEXT in plain decimal notation
//! with the declared scale (compared through the `TSQL_DECIMAL` collation); strings as TEXT (compared through
//! `TSQL_CI_AS`); binary as BLOB; DATE 'YYYY-MM-DD'; TIME 'hh:mm:ss.fffffff'; DATETIME/SMALLDATETIME/DATETIME2
//! 'YYYY-MM-DD hh:mm:ss.fffffff' (seven digits always, so text order is time order); DATETIMEOFFSET the same plus
//! ' +hh:mm'; UNIQUEIDENTIFIER upper-case 8-4-4-4-12 text.

use crate::ast::BinOp;
use crate::decimal::Decimal;
use crate::error::{Result, SqlError};
use crate::eval::{binary_op, call_builtin, like};
use crate::parser::parse_data_type;
use crate::types::DataType;
use crate::value::{coerce_for_column, collate_cmp, convert, Value};
use chrono::{Datelike, Timelike};
use std::cmp::Ordering;

/// Collation for character columns: SQL_Latin1_General_CP1_CI_AS (case-insensitive, trailing spaces ignored).
pub const COLLATION_CI_AS: &str = "TSQL_CI_AS";
/// Collation for DECIMAL/NUMERIC/MONEY columns stored as text: numeric order.
pub const COLLATION_DECIMAL: &str = "TSQL_DECIMAL";

/// A SQLite value, without depending on SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Converts a value to its canonical stored form.
pub fn to_stored(v: &Value) -> Stored {
    match v {
        Value::Null => Stored::Null,
        Value::Bit(b) => Stored::Integer(*b as i64),
        Value::TinyInt(_) | Value::SmallInt(_) | Value::Int(_) | Value::BigInt(_) => {
            Stored::Integer(v.as_i64().unwrap_or(0))
        }
        Value::Decimal(d) => Stored::Text(d.to_string()),
        Value::Money(m) | Value::SmallMoney(m) => {
            Stored::Text(Decimal::new(*m as i128, 19, 4).to_string())
        }
        Value::Float(f) => Stored::Real(*f),
        Value::Real(f) => Stored::Real(*f as f64),
        Value::VarChar(s) | Value::NVarChar(s) => Stored::Text(s.clone()),
        Value::Binary(b) => Stored::Blob(b.clone()),
        Value::Date(d) => Stored::Text(format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())),
        Value::Time(t, _) => Stored::Text(format!(
            "{:02}:{:02}:{:02}.{:07}",
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() / 100
        )),
        Value::DateTime(dt) | Value::SmallDateTime(dt) | Value::DateTime2(dt, _) => {
            Stored::Text(stamp(dt))
        }
        Value::DateTimeOffset(dto, _) => {
            let secs = dto.offset().local_minus_utc();
            Stored::Text(format!(
                "{} {}{:02}:{:02}",
                stamp(&dto.naive_local()),
                if secs < 0 { '-' } else { '+' },
                secs.abs() / 3600,
                secs.abs() % 3600 / 60
            ))
        }
        Value::Guid(_) => Stored::Text(v.to_text().unwrap_or_default()),
    }
}

fn stamp(dt: &chrono::NaiveDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:07}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.nanosecond() / 100
    )
}

/// Reads a stored value as a T-SQL value of the declared type (or by storage class when the type is unknown).
pub fn from_stored(s: &Stored, ty: Option<&DataType>) -> Result<Value> {
    let natural = match s {
        Stored::Null => return Ok(Value::Null),
        Stored::Integer(i) => {
            if *i >= i32::MIN as i64 && *i <= i32::MAX as i64 {
                Value::Int(*i as i32)
            } else {
                Value::BigInt(*i)
            }
        }
        Stored::Real(f) => Value::Float(*f),
        Stored::Text(t) => Value::NVarChar(t.clone()),
        Stored::Blob(b) => Value::Binary(b.clone()),
    };
    match ty {
        None => Ok(natural),
        Some(t) => {
            let natural = match (&natural, t) {
                // Text that is a stored number keeps exactness: read it as a decimal first.
                (Value::NVarChar(x), t) if t.is_numeric() => match Decimal::parse(x) {
                    Some(d) => Value::Decimal(d),
                    None => Value::VarChar(x.clone()),
                },
                (Value::NVarChar(x), t) if !t.is_unicode() => Value::VarChar(x.clone()),
                _ => natural,
            };
            convert(&natural, t, None)
        }
    }
}

/// Pure functions the translator emits; the engine registers each (deterministic) with [`call_function`].
/// Instance functions (`tsql_getdate`, `tsql_sysdatetime`, `tsql_newid`, `tsql_db_name`, `tsql_scope_identity`,
/// …, any `tsql_<name>` of a function not listed here) are the engine's own.
pub const PURE_FUNCTIONS: &[(&str, i32)] = &[
    // (name, number of arguments; -1 = variable)
    ("tsql_add", 4),
    ("tsql_sub", 4),
    ("tsql_mul", 4),
    ("tsql_div", 4),
    ("tsql_mod", 4),
    ("tsql_convert", -1),
    ("tsql_coerce", 4),
    ("tsql_like", -1),
    ("tsql_dateadd", 3),
    ("tsql_datediff", 3),
    ("tsql_datediff_big", 3),
    ("tsql_datepart", 2),
    ("tsql_datename", 2),
    ("tsql_year", 1),
    ("tsql_month", 1),
    ("tsql_day", 1),
    ("tsql_eomonth", -1),
    ("tsql_datefromparts", 3),
    ("tsql_charindex", -1),
    ("tsql_patindex", 2),
    ("tsql_replace", 3),
    ("tsql_right", 2),
    ("tsql_left", 2),
    ("tsql_datalength", 1),
    ("tsql_round", -1),
    ("tsql_ceiling", 1),
    ("tsql_floor", 1),
    ("tsql_power", 2),
    ("tsql_sqrt", 1),
    ("tsql_square", 1),
    ("tsql_exp", 1),
    ("tsql_log", -1),
    ("tsql_log10", 1),
    ("tsql_pi", 0),
    ("tsql_sign", 1),
    ("tsql_replicate", 2),
    ("tsql_space", 1),
    ("tsql_reverse", 1),
    ("tsql_stuff", 4),
    ("tsql_char", 1),
    ("tsql_nchar", 1),
    ("tsql_ascii", 1),
    ("tsql_unicode", 1),
    ("tsql_quotename", -1),
    ("tsql_str", -1),
    ("tsql_isnumeric", 1),
    ("tsql_isdate", 1),
    ("tsql_concat_ws", -1),
    ("tsql_choose", -1),
];

fn type_arg(s: &Stored) -> Result<Option<DataType>> {
    match s {
        Stored::Text(t) => Ok(Some(parse_data_type(t)?)),
        _ => Ok(None),
    }
}

fn typed(s: &Stored, ty: Option<DataType>) -> Result<Value> {
    from_stored(s, ty.as_ref())
}

/// Implements the pure `tsql_*` functions over stored values.
pub fn call_function(name: &str, args: &[Stored]) -> Result<Stored> {
    let lname = name.to_ascii_lowercase();
    let arith = |op: BinOp| -> Result<Stored> {
        if args.len() != 4 {
            return Err(SqlError::new(
                174,
                15,
                format!("{} needs 4 arguments", lname),
            ));
        }
        let a = typed(&args[0], type_arg(&args[2])?)?;
        let b = typed(&args[1], type_arg(&args[3])?)?;
        Ok(to_stored(&binary_op(op, &a, &b)?))
    };
    match lname.as_str() {
        "tsql_add" => arith(BinOp::Add),
        "tsql_sub" => arith(BinOp::Sub),
        "tsql_mul" => arith(BinOp::Mul),
        "tsql_div" => arith(BinOp::Div),
        "tsql_mod" => arith(BinOp::Mod),
        // tsql_convert(value, 'target type', style|NULL, 'source type'|NULL [, try])
        "tsql_convert" => {
            if args.len() < 2 {
                return Err(SqlError::new(
                    174,
                    15,
                    "tsql_convert needs at least 2 arguments",
                ));
            }
            let to = type_arg(&args[1])?
                .ok_or_else(|| SqlError::new(174, 15, "tsql_convert: bad target type"))?;
            let style = match args.get(2) {
                Some(Stored::Integer(i)) => Some(*i),
                _ => None,
            };
            let from = match args.get(3) {
                Some(s) => type_arg(s)?,
                None => None,
            };
            let try_ = matches!(args.get(4), Some(Stored::Integer(1)));
            let v = typed(&args[0], from)?;
            match convert(&v, &to, style) {
                Ok(x) => Ok(to_stored(&x)),
                Err(_) if try_ => Ok(Stored::Null),
                Err(e) => Err(e),
            }
        }
        // tsql_coerce(value, 'column type', 'table', 'column'): INSERT/UPDATE enforcement (245, 2628, 8115).
        "tsql_coerce" => {
            if args.len() != 4 {
                return Err(SqlError::new(174, 15, "tsql_coerce needs 4 arguments"));
            }
            let ty = type_arg(&args[1])?
                .ok_or_else(|| SqlError::new(174, 15, "tsql_coerce: bad type"))?;
            let text = |s: &Stored| match s {
                Stored::Text(t) => t.clone(),
                _ => String::new(),
            };
            let v = from_stored(&args[0], None)?;
            // Text arriving for a non-character column is a varchar literal in T-SQL terms.
            let v = match (&v, ty.is_unicode()) {
                (Value::NVarChar(s), false) => Value::VarChar(s.clone()),
                _ => v,
            };
            let v = match (&v, ty.is_numeric()) {
                (Value::VarChar(s) | Value::NVarChar(s), true) => match Decimal::parse(s) {
                    Some(d) if s.contains('.') => Value::Decimal(d),
                    _ => v,
                },
                _ => v,
            };
            Ok(to_stored(&coerce_for_column(
                &v,
                &ty,
                &text(&args[2]),
                &text(&args[3]),
            )?))
        }
        "tsql_like" => {
            if args.len() < 2 {
                return Err(SqlError::new(174, 15, "tsql_like needs 2 arguments"));
            }
            let s = from_stored(&args[0], None)?;
            let p = from_stored(&args[1], None)?;
            let esc = match args.get(2) {
                Some(Stored::Text(t)) => t.chars().next(),
                _ => None,
            };
            if s.is_null() || p.is_null() {
                return Ok(Stored::Null);
            }
            Ok(Stored::Integer(like(
                &s.to_text().unwrap_or_default(),
                &p.to_text().unwrap_or_default(),
                esc,
            ) as i64))
        }
        _ => {
            let fname = lname
                .strip_prefix("tsql_")
                .unwrap_or(&lname)
                .to_ascii_uppercase();
            let vals: Vec<Value> = args
                .iter()
                .map(|a| from_stored(a, None))
                .collect::<Result<_>>()?;
            Ok(to_stored(&call_builtin(&fname, &vals)?))
        }
    }
}

/// State of the `tsql_sum` / `tsql_avg` aggregates over DECIMAL/MONEY values (exact, as SQL Server sums them:
/// SUM(decimal(p,s)) is decimal(38,s); AVG keeps the argument's scale with a minimum of 6 for decimals).
#[derive(Debug, Clone, Default)]
pub struct ExactAggregate {
    sum: Option<Decimal>,
    count: i64,
    money: bool,
}

impl ExactAggregate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one stored value (NULLs are ignored, as in SQL Server).
    pub fn step(&mut self, v: &Stored) -> Result<()> {
        let d = match v {
            Stored::Null => return Ok(()),
            Stored::Integer(i) => Decimal::new(*i as i128, 19, 0),
            Stored::Real(f) => Decimal::from_f64(*f, 38, 10)?,
            Stored::Text(t) => Decimal::parse(t).ok_or_else(|| {
                SqlError::new(8114, 16, "Error converting data type nvarchar to numeric.")
            })?,
            Stored::Blob(_) => {
                return Err(SqlError::new(
                    8117,
                    16,
                    "Operand data type varbinary is invalid for sum operator.",
                ))
            }
        };
        if matches!(v, Stored::Text(t) if t.split_once('.').is_some_and(|(_, f)| f.len() == 4)) {
            self.money = true;
        }
        let d = Decimal { precision: 38, ..d };
        self.sum = Some(match self.sum {
            None => d,
            Some(acc) => {
                let r = acc.arith(&d, '+')?;
                Decimal { precision: 38, ..r }
            }
        });
        self.count += 1;
        Ok(())
    }

    pub fn sum(&self) -> Stored {
        match &self.sum {
            Some(d) => Stored::Text(d.to_string()),
            None => Stored::Null,
        }
    }

    pub fn avg(&self) -> Result<Stored> {
        match &self.sum {
            Some(d) if self.count > 0 => {
                let scale = if self.money { 4 } else { d.scale.max(6) };
                let n = Decimal::new(self.count as i128, 19, 0);
                let q = d.arith(&n, '/')?;
                Ok(Stored::Text(q.rescale(38, scale.min(38))?.to_string()))
            }
            _ => Ok(Stored::Null),
        }
    }
}

/// The `TSQL_CI_AS` collation.
pub fn collate_ci_as(a: &str, b: &str) -> Ordering {
    collate_cmp(a, b)
}

/// The `TSQL_DECIMAL` collation: numeric order of decimal text; non-numbers sort after numbers, by text.
pub fn collate_decimal(a: &str, b: &str) -> Ordering {
    match (Decimal::parse(a), Decimal::parse(b)) {
        (Some(x), Some(y)) => x.cmp_value(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => a.cmp(b),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Len;

    #[test]
    fn round_trip() {
        let vals = [
            Value::Int(5),
            Value::Decimal(Decimal::parse("12.50").unwrap()),
            Value::Money(123_4500),
            Value::NVarChar("x".into()),
            Value::Binary(vec![1, 2]),
        ];
        for v in vals {
            let t = v.data_type().unwrap();
            assert_eq!(from_stored(&to_stored(&v), Some(&t)).unwrap(), v);
        }
        let dt = convert(
            &Value::VarChar("2026-11-27 13:05:09.5".into()),
            &DataType::DateTime2(3),
            None,
        )
        .unwrap();
        assert_eq!(
            to_stored(&dt),
            Stored::Text("2026-11-27 13:05:09.5000000".into())
        );
        assert_eq!(
            from_stored(&to_stored(&dt), Some(&DataType::DateTime2(3))).unwrap(),
            dt
        );
    }

    #[test]
    fn functions() {
        let t = |s: &str| Stored::Text(s.into());
        assert_eq!(
            call_function(
                "tsql_add",
                &[t("1.50"), Stored::Integer(1), t("decimal(3,2)"), t("int")]
            )
            .unwrap(),
            t("2.50")
        );
        assert_eq!(
            call_function(
                "tsql_add",
                &[t("a"), t("b"), t("varchar(1)"), t("varchar(1)")]
            )
            .unwrap(),
            t("ab")
        );
        assert_eq!(
            call_function(
                "tsql_div",
                &[
                    Stored::Integer(1),
                    Stored::Integer(0),
                    Stored::Null,
                    Stored::Null
                ]
            )
            .unwrap_err()
            .number,
            8134
        );
        assert_eq!(
            call_function(
                "tsql_coerce",
                &[t("abcdef"), t("nvarchar(3)"), t("t"), t("c")]
            )
            .unwrap_err()
            .number,
            2628
        );
        assert_eq!(
            call_function(
                "tsql_coerce",
                &[t("1.255"), t("decimal(5,2)"), t("t"), t("c")]
            )
            .unwrap(),
            t("1.26")
        );
        assert_eq!(
            call_function("tsql_coerce", &[t("x"), t("int"), t("t"), t("c")])
                .unwrap_err()
                .number,
            245
        );
        assert_eq!(
            call_function(
                "tsql_convert",
                &[
                    t("2026-11-27 13:05:09.0000000"),
                    t("varchar(30)"),
                    Stored::Integer(120),
                    t("datetime")
                ]
            )
            .unwrap(),
            t("2026-11-27 13:05:09")
        );
        assert_eq!(
            call_function(
                "tsql_dateadd",
                &[t("day"), Stored::Integer(1), t("2026-12-31")]
            )
            .unwrap(),
            t("2027-01-01 00:00:00.0000000")
        );
        assert_eq!(
            call_function("tsql_charindex", &[t("B"), t("abc")]).unwrap(),
            Stored::Integer(2)
        );
        assert_eq!(collate_decimal("10.00", "9.5"), Ordering::Greater);
        let mut agg = ExactAggregate::new();
        for v in ["0.10", "0.20", "0.05"] {
            agg.step(&t(v)).unwrap();
        }
        agg.step(&Stored::Null).unwrap();
        assert_eq!(agg.sum(), t("0.35"));
        assert_eq!(agg.avg().unwrap(), t("0.116667"));
        assert_eq!(collate_ci_as("ABC ", "abc"), Ordering::Equal);
        let _ = Len::Max;
    }
}
