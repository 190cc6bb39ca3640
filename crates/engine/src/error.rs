//! Errors in SQL Server's own shape: every failure the engine reports carries the number, severity and state a
//! SQL Server client expects, so the SQL endpoint can pass it on unchanged.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub number: i32,
    pub severity: u8,
    pub state: u8,
    pub message: String,
}

impl SqlError {
    pub fn new(number: i32, severity: u8, message: impl Into<String>) -> Self {
        SqlError {
            number,
            severity,
            state: 1,
            message: message.into(),
        }
    }

    pub fn with_state(mut self, state: u8) -> Self {
        self.state = state;
        self
    }

    /// Msg 911: the database named does not exist.
    pub fn no_database(name: &str) -> Self {
        SqlError::new(
            911,
            16,
            format!(
                "Database '{name}' does not exist. Make sure that the name is entered correctly."
            ),
        )
    }

    /// Msg 1222.
    pub fn lock_timeout() -> Self {
        SqlError::new(1222, 16, "Lock request time out period exceeded.").with_state(51)
    }

    /// Msg 3960: a snapshot transaction tried to write after another transaction changed the database.
    pub fn snapshot_conflict(db: &str) -> Self {
        SqlError::new(
            3960,
            16,
            format!(
                "Snapshot isolation transaction aborted due to update conflict. You cannot use snapshot isolation \
                 to access table directly or indirectly in database '{db}' to update, delete, or insert the row \
                 that has been modified or deleted by another transaction. Retry the transaction or change the \
                 isolation level for the update/delete statement."
            ),
        )
        .with_state(2)
    }

    /// Msg 9002 with the log_reuse_wait_desc that holds the log.
    pub fn log_full(db: &str, reason: &str) -> Self {
        SqlError::new(
            9002,
            17,
            format!("The transaction log for database '{db}' is full due to '{reason}'."),
        )
        .with_state(2)
    }

    /// Msg 824: a log or page read failed its checksum.
    pub fn corrupt(db: &str, what: impl fmt::Display) -> Self {
        SqlError::new(
            824,
            24,
            format!(
                "SQL Server detected a logical consistency-based I/O error: incorrect checksum. It occurred in \
                 database '{db}': {what}. This is a severe error condition that threatens database integrity and \
                 must be corrected immediately."
            ),
        )
        .with_state(2)
    }

    /// Cancellation by the client (ATTENTION): not shown to the user as an error, the TDS layer acks it.
    pub fn cancelled() -> Self {
        SqlError::new(3617, 25, "The query was cancelled by the client.")
    }

    pub fn is_cancel(&self) -> bool {
        self.number == 3617
    }

    /// An operating system or SQLite failure that has no SQL Server number of its own.
    pub fn io(context: impl fmt::Display, err: impl fmt::Display) -> Self {
        SqlError::new(3013, 16, format!("{context}: {err}"))
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Msg {}, Level {}, State {}: {}",
            self.number, self.severity, self.state, self.message
        )
    }
}

impl std::error::Error for SqlError {}

impl From<rusqlite::Error> for SqlError {
    fn from(e: rusqlite::Error) -> Self {
        // A prepare error that also carries the statement and offset: judge it by SQLite's own message.
        if let rusqlite::Error::SqlInputError { error, msg, .. } = e {
            // SQLite adds a hint for double-quoted names ("x" - should this be a string literal…?): T-SQL's
            // message names the column alone.
            let msg = match msg.split_once(" - should this be") {
                Some((head, _)) => head.replace('"', ""),
                None => msg,
            };
            return rusqlite::Error::SqliteFailure(error, Some(msg)).into();
        }
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                SqlError::cancelled()
            }
            rusqlite::Error::SqliteFailure(f, msg)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let m = msg.clone().unwrap_or_default();
                if m.contains("UNIQUE") || m.contains("PRIMARY KEY") {
                    SqlError::new(
                        2627,
                        14,
                        format!("Violation of PRIMARY KEY or UNIQUE constraint. {m}"),
                    )
                } else if m.contains("FOREIGN KEY") {
                    SqlError::new(
                        547,
                        16,
                        format!("The statement conflicted with the FOREIGN KEY constraint. {m}"),
                    )
                } else if m.contains("CHECK") {
                    SqlError::new(
                        547,
                        16,
                        format!("The statement conflicted with the CHECK constraint. {m}"),
                    )
                } else if m.contains("NOT NULL") {
                    SqlError::new(
                        515,
                        16,
                        format!("Cannot insert the value NULL into a column. {m}"),
                    )
                } else {
                    SqlError::new(547, 16, m)
                }
            }
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
                SqlError::new(
                    1105,
                    17,
                    format!("Could not allocate space: the disk is full ({e})."),
                )
            }
            rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("no such table: ") => {
                SqlError::new(
                    208,
                    16,
                    format!(
                        "Invalid object name '{}'.",
                        m.trim_start_matches("no such table: ")
                    ),
                )
            }
            rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("no such column: ") => {
                SqlError::new(
                    207,
                    16,
                    format!(
                        "Invalid column name '{}'.",
                        m.trim_start_matches("no such column: ")
                    ),
                )
            }
            rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("no such function: ") => {
                SqlError::new(
                    195,
                    15,
                    format!(
                        "'{}' is not a recognized built-in function name.",
                        m.trim_start_matches("no such function: tsql_")
                            .trim_start_matches("no such function: ")
                    ),
                )
            }
            rusqlite::Error::SqliteFailure(_, Some(m))
                if m.starts_with("table ") && m.ends_with(" already exists") =>
            {
                SqlError::new(
                    2714,
                    16,
                    format!(
                        "There is already an object named '{}' in the database.",
                        m.trim_start_matches("table ")
                            .trim_end_matches(" already exists")
                            .trim_matches('"')
                    ),
                )
            }
            _ => SqlError::new(50000, 16, e.to_string()),
        }
    }
}

impl From<std::io::Error> for SqlError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            return SqlError::new(
                1105,
                17,
                format!("Could not allocate space: the disk is full ({e})."),
            );
        }
        SqlError::new(
            823,
            24,
            format!("The operating system returned an error to SQL Server: {e}."),
        )
    }
}

pub type Result<T, E = SqlError> = std::result::Result<T, E>;
