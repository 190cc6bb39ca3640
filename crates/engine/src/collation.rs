//! SQL Server's default collation, SQL_Latin1_General_CP1_CI_AS: case-insensitive, trailing spaces ignored.
//! Registered identically on every connection, because index order is stored in the pages the link ships.

use rusqlite::Connection;
use std::cmp::Ordering;

pub const DEFAULT_COLLATION: &str = "SQL_Latin1_General_CP1_CI_AS";

pub fn compare(a: &str, b: &str) -> Ordering {
    let a = a.trim_end_matches(' ');
    let b = b.trim_end_matches(' ');
    let mut ai = a.chars().flat_map(char::to_lowercase);
    let mut bi = b.chars().flat_map(char::to_lowercase);
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x != y => return x.cmp(&y),
            _ => {}
        }
    }
}

pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_collation(DEFAULT_COLLATION, compare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_trailing_space_insensitive() {
        assert_eq!(compare("Abc  ", "aBC"), Ordering::Equal);
        assert_eq!(compare("abc", "abd"), Ordering::Less);
        assert_eq!(compare(" a", "a"), Ordering::Less);
    }
}
