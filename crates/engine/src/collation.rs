//! SQL Server's default collation (SQL_Latin1_General_CP1_CI_AS) and the pure `tsql_*` functions that translated
//! statements call, registered identically on EVERY connection the engine opens: index order is stored in the
//! pages the link ships, so readers, recovery and integrity checks must all compare the same way.

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use tsql::storage::{self, Stored};

pub const DEFAULT_COLLATION: &str = "SQL_Latin1_General_CP1_CI_AS";

/// A tsql error crossing SQLite keeps its number: "tsql:<number>:<severity>:<state>:<message>".
pub const ERROR_PREFIX: &str = "tsql:";

pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_collation(DEFAULT_COLLATION, storage::collate_ci_as)?;
    conn.create_collation(storage::COLLATION_CI_AS, storage::collate_ci_as)?;
    conn.create_collation(storage::COLLATION_DECIMAL, storage::collate_decimal)?;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    for (name, nargs) in storage::PURE_FUNCTIONS {
        let fname: &'static str = name;
        conn.create_scalar_function(fname, *nargs, flags, move |ctx| {
            let mut args = Vec::with_capacity(ctx.len());
            for i in 0..ctx.len() {
                args.push(to_stored(ctx.get_raw(i)));
            }
            match storage::call_function(fname, &args) {
                Ok(v) => Ok(from_stored(v)),
                Err(e) => Err(rusqlite::Error::UserFunctionError(
                    format!(
                        "{ERROR_PREFIX}{}:{}:{}:{}",
                        e.number, e.severity, e.state, e.message
                    )
                    .into(),
                )),
            }
        })?;
    }
    conn.create_aggregate_function(
        "tsql_sum",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        ExactSum { avg: false },
    )?;
    conn.create_aggregate_function(
        "tsql_avg",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        ExactSum { avg: true },
    )?;
    Ok(())
}

/// SUM/AVG over DECIMAL/NUMERIC/MONEY stored as text: exact, never through floating point.
struct ExactSum {
    avg: bool,
}

fn tsql_err(e: tsql::SqlError) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(
        format!(
            "{ERROR_PREFIX}{}:{}:{}:{}",
            e.number, e.severity, e.state, e.message
        )
        .into(),
    )
}

fn exact(v: ValueRef<'_>) -> Result<Option<tsql::Value>, tsql::SqlError> {
    use tsql::{DataType, Value as T};
    Ok(Some(match v {
        ValueRef::Null => return Ok(None),
        ValueRef::Integer(i) => T::BigInt(i),
        ValueRef::Real(f) => T::Float(f),
        ValueRef::Text(t) => {
            let t = String::from_utf8_lossy(t).into_owned();
            let scale = t.split_once('.').map(|(_, f)| f.len()).unwrap_or(0).min(38) as u8;
            tsql::value::convert(
                &T::VarChar(t),
                &DataType::Decimal {
                    precision: 38,
                    scale,
                    numeric: false,
                },
                None,
            )?
        }
        ValueRef::Blob(_) => {
            return Err(tsql::SqlError::new(
                8117,
                16,
                "Operand data type varbinary is invalid for sum operator.",
            ))
        }
    }))
}

impl rusqlite::functions::Aggregate<(Option<tsql::Value>, i64), Value> for ExactSum {
    fn init(
        &self,
        _: &mut rusqlite::functions::Context<'_>,
    ) -> rusqlite::Result<(Option<tsql::Value>, i64)> {
        Ok((None, 0))
    }

    fn step(
        &self,
        ctx: &mut rusqlite::functions::Context<'_>,
        acc: &mut (Option<tsql::Value>, i64),
    ) -> rusqlite::Result<()> {
        let Some(v) = exact(ctx.get_raw(0)).map_err(tsql_err)? else {
            return Ok(());
        };
        acc.0 = Some(match acc.0.take() {
            None => v,
            Some(a) => tsql::eval::binary_op(tsql::ast::BinOp::Add, &a, &v).map_err(tsql_err)?,
        });
        acc.1 += 1;
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut rusqlite::functions::Context<'_>,
        acc: Option<(Option<tsql::Value>, i64)>,
    ) -> rusqlite::Result<Value> {
        let Some((Some(sum), n)) = acc else {
            return Ok(Value::Null);
        };
        let v = if self.avg {
            tsql::eval::binary_op(tsql::ast::BinOp::Div, &sum, &tsql::Value::BigInt(n))
                .map_err(tsql_err)?
        } else {
            sum
        };
        Ok(from_stored(storage::to_stored(&v)))
    }
}

pub fn to_stored(v: ValueRef<'_>) -> Stored {
    match v {
        ValueRef::Null => Stored::Null,
        ValueRef::Integer(i) => Stored::Integer(i),
        ValueRef::Real(f) => Stored::Real(f),
        ValueRef::Text(t) => Stored::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Stored::Blob(b.to_vec()),
    }
}

pub fn from_stored(s: Stored) -> Value {
    match s {
        Stored::Null => Value::Null,
        Stored::Integer(i) => Value::Integer(i),
        Stored::Real(f) => Value::Real(f),
        Stored::Text(t) => Value::Text(t),
        Stored::Blob(b) => Value::Blob(b),
    }
}

/// Recover a tsql error's number from SQLite's message text.
pub fn parse_error(msg: &str) -> Option<(i32, u8, u8, String)> {
    let rest = &msg[msg.find(ERROR_PREFIX)? + ERROR_PREFIX.len()..];
    let mut it = rest.splitn(4, ':');
    let n = it.next()?.parse().ok()?;
    let sev = it.next()?.parse().ok()?;
    let st = it.next()?.parse().ok()?;
    Some((n, sev, st, it.next()?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collation_and_functions_are_registered() {
        let c = Connection::open_in_memory().unwrap();
        register(&c).unwrap();
        let eq: i64 = c
            .query_row(
                &format!("SELECT 'Abc  ' = 'aBC' COLLATE \"{DEFAULT_COLLATION}\""),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(eq, 1);
        let e = c
            .query_row("SELECT tsql_div(1, 0, 'int', 'int')", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_err();
        let (n, ..) = parse_error(&e.to_string()).expect("tsql error code survives SQLite");
        assert_eq!(n, 8134);
    }
}
