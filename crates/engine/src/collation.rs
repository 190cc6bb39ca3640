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
                    format!("{ERROR_PREFIX}{}:{}:{}:{}", e.number, e.severity, e.state, e.message).into(),
                )),
            }
        })?;
    }
    Ok(())
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
            .query_row(&format!("SELECT 'Abc  ' = 'aBC' COLLATE \"{DEFAULT_COLLATION}\""), [], |r| r.get(0))
            .unwrap();
        assert_eq!(eq, 1);
        let e = c.query_row("SELECT tsql_div(1, 0, 'int', 'int')", [], |r| r.get::<_, i64>(0)).unwrap_err();
        let (n, ..) = parse_error(&e.to_string()).expect("tsql error code survives SQLite");
        assert_eq!(n, 8134);
    }
}
