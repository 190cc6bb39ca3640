//! SQL Server logins, kept in master with salted Argon2id hashes (never the password).

use crate::exec::{display, Conn};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use engine::Instance;
use rusqlite::OptionalExtension;
use tsql::admin::{find_opt, AlterLoginAction};
use tsql::SqlError;

fn ensure_table(inst: &Instance) -> Result<(), SqlError> {
    inst.master()
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS logins(name TEXT PRIMARY KEY COLLATE NOCASE, password_hash TEXT NOT NULL, \
             is_disabled INTEGER NOT NULL DEFAULT 0, create_date TEXT NOT NULL DEFAULT (datetime('now')))",
        )
        .map_err(db)
}

fn db(e: rusqlite::Error) -> SqlError {
    SqlError::new(50000, 16, format!("master catalog: {e}"))
}

fn hash(password: &str) -> Result<String, SqlError> {
    let mut raw = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| SqlError::new(50000, 16, format!("no randomness for a password salt: {e}")))?;
    let salt =
        SaltString::encode_b64(&raw).map_err(|e| SqlError::new(50000, 16, format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SqlError::new(50000, 16, format!("password hashing failed: {e}")))
}

/// SQL Server's default policy: at least 8 characters from three of the four classes.
pub fn check_policy(password: &str) -> Result<(), SqlError> {
    let classes = [
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if password.chars().count() < 8 || classes.iter().filter(|x| **x).count() < 3 {
        return Err(SqlError::new(
            15118,
            16,
            "Password validation failed. The password does not meet the operating system policy requirements because it is not complex enough.",
        ));
    }
    Ok(())
}

/// First start: create sa from MSSQL_SA_PASSWORD (the SQL Server container convention).
pub fn ensure_sa(inst: &Instance, sa_password: Option<&str>) -> Result<(), SqlError> {
    ensure_table(inst)?;
    let exists: Option<String> = inst
        .master()
        .query_row("SELECT name FROM logins WHERE name = 'sa'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db)?;
    if exists.is_some() {
        return Ok(());
    }
    let pw = sa_password.ok_or_else(|| {
        SqlError::new(18456, 14, "MSSQL_SA_PASSWORD must be set the first time an instance starts: it becomes the sa login's password.")
    })?;
    check_policy(pw)?;
    let h = hash(pw)?;
    inst.master()
        .execute(
            "INSERT INTO logins(name, password_hash) VALUES ('sa', ?1)",
            [h],
        )
        .map_err(db)?;
    Ok(())
}

pub fn create(inst: &Instance, name: &str, password: &str, policy: bool) -> Result<(), SqlError> {
    ensure_table(inst)?;
    if policy {
        check_policy(password)?;
    }
    let h = hash(password)?;
    let n = inst
        .master()
        .execute(
            "INSERT OR IGNORE INTO logins(name, password_hash) VALUES (?1, ?2)",
            [name, &h],
        )
        .map_err(db)?;
    if n == 0 {
        return Err(SqlError::new(
            15025,
            16,
            format!("The server principal '{name}' already exists."),
        ));
    }
    Ok(())
}

pub fn alter(
    conn: &mut Conn,
    inst: &Instance,
    name: &str,
    action: &AlterLoginAction,
) -> Result<(), SqlError> {
    ensure_table(inst)?;
    let n = match action {
        AlterLoginAction::Enable => inst
            .master()
            .execute("UPDATE logins SET is_disabled = 0 WHERE name = ?1", [name])
            .map_err(db)?,
        AlterLoginAction::Disable => inst
            .master()
            .execute("UPDATE logins SET is_disabled = 1 WHERE name = ?1", [name])
            .map_err(db)?,
        AlterLoginAction::With(opts) => {
            let Some(p) = find_opt(opts, "PASSWORD") else {
                return Ok(());
            };
            let pw = match p.expr() {
                Some(e) => display(&conn.eval(e)?),
                None => p.word().unwrap_or_default(),
            };
            let policy = find_opt(opts, "CHECK_POLICY")
                .and_then(|o| o.word())
                .map(|w| w != "OFF")
                .unwrap_or(true);
            if policy {
                check_policy(&pw)?;
            }
            let h = hash(&pw)?;
            inst.master()
                .execute(
                    "UPDATE logins SET password_hash = ?2 WHERE name = ?1",
                    [name, &h],
                )
                .map_err(db)?
        }
    };
    if n == 0 {
        return Err(SqlError::new(15151, 16, format!("Cannot alter the login '{name}', because it does not exist or you do not have permission.")));
    }
    Ok(())
}

pub fn drop(inst: &Instance, name: &str) -> Result<(), SqlError> {
    ensure_table(inst)?;
    if name.eq_ignore_ascii_case("sa") {
        return Err(SqlError::new(
            15405,
            11,
            "Cannot use the special principal 'sa'.",
        ));
    }
    let n = inst
        .master()
        .execute("DELETE FROM logins WHERE name = ?1", [name])
        .map_err(db)?;
    if n == 0 {
        return Err(SqlError::new(15151, 16, format!("Cannot drop the login '{name}', because it does not exist or you do not have permission.")));
    }
    Ok(())
}

/// Check a login's password (slow by design: run off the async threads).
pub fn verify(inst: &Instance, name: &str, password: &str) -> bool {
    if ensure_table(inst).is_err() {
        return false;
    }
    let row: Option<(String, i64)> = inst
        .master()
        .query_row(
            "SELECT password_hash, is_disabled FROM logins WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ok()
        .flatten();
    let Some((h, disabled)) = row else {
        return false;
    };
    if disabled != 0 {
        return false;
    }
    PasswordHash::new(&h)
        .map(|p| {
            Argon2::default()
                .verify_password(password.as_bytes(), &p)
                .is_ok()
        })
        .unwrap_or(false)
}
