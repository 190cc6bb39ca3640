//! SQL Server-shaped errors: every failure in this crate is a value the session layer can send as a TDS ERROR token.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub number: i32,
    pub severity: u8,
    pub state: u8,
    pub message: String,
    /// 1-based line inside the batch (0 when unknown, e.g. a runtime error outside any statement).
    pub line: u32,
}

impl SqlError {
    pub fn new(number: i32, severity: u8, message: impl Into<String>) -> Self {
        SqlError {
            number,
            severity,
            state: 1,
            message: message.into(),
            line: 0,
        }
    }
    pub fn at_line(mut self, line: u32) -> Self {
        if self.line == 0 {
            self.line = line;
        }
        self
    }
    /// 102: generic syntax error near a token.
    pub fn syntax_near(near: &str, line: u32) -> Self {
        SqlError::new(102, 15, format!("Incorrect syntax near '{}'.", near)).at_line(line)
    }
    /// 156: syntax error at a reserved keyword.
    pub fn syntax_near_keyword(kw: &str, line: u32) -> Self {
        SqlError::new(
            156,
            15,
            format!("Incorrect syntax near the keyword '{}'.", kw),
        )
        .at_line(line)
    }
    /// Syntax we recognise but do not implement: named, never silently different.
    pub fn unsupported(what: &str, line: u32) -> Self {
        SqlError::new(
            40000,
            16,
            format!("'{}' is not supported by this server.", what),
        )
        .at_line(line)
    }
    pub fn conversion(from_desc: &str, to_type: &str) -> Self {
        SqlError::new(
            245,
            16,
            format!(
                "Conversion failed when converting {} to data type {}.",
                from_desc, to_type
            ),
        )
    }
    pub fn overflow(to_type: &str) -> Self {
        SqlError::new(
            8115,
            16,
            format!(
                "Arithmetic overflow error converting expression to data type {}.",
                to_type
            ),
        )
    }
    pub fn divide_by_zero() -> Self {
        SqlError::new(8134, 16, "Divide by zero error encountered.")
    }
    pub fn must_declare(var: &str) -> Self {
        SqlError::new(
            137,
            15,
            format!("Must declare the scalar variable \"{}\".", var),
        )
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Msg {}, Level {}, State {}, Line {}\n{}",
            self.number, self.severity, self.state, self.line, self.message
        )
    }
}

impl std::error::Error for SqlError {}

pub type Result<T> = std::result::Result<T, SqlError>;
