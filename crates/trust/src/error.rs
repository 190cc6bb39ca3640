//! Errors carry SQL Server's message number so the T-SQL layer can raise them unchanged.

use std::fmt;

/// An error with a SQL Server message number, severity and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustError {
    pub number: i32,
    pub severity: u8,
    pub state: u8,
    pub message: String,
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Msg {}, Level {}, State {}: {}",
            self.number, self.severity, self.state, self.message
        )
    }
}

impl std::error::Error for TrustError {}

pub type Result<T> = std::result::Result<T, TrustError>;

impl TrustError {
    pub fn new(number: i32, message: impl Into<String>) -> Self {
        TrustError {
            number,
            severity: 16,
            state: 1,
            message: message.into(),
        }
    }

    /// Storage or OS failure: no SQL Server number fits, 50000 marks it as ours.
    pub fn internal(message: impl Into<String>) -> Self {
        TrustError::new(50000, message)
    }
}

impl From<rusqlite::Error> for TrustError {
    fn from(e: rusqlite::Error) -> Self {
        TrustError::internal(format!("trust store: {e}"))
    }
}

impl From<std::io::Error> for TrustError {
    fn from(e: std::io::Error) -> Self {
        TrustError::internal(format!("trust store I/O: {e}"))
    }
}

/// Message numbers used by this crate (texts follow SQL Server's where it has one).
pub mod codes {
    /// Password validation failed (complexity).
    pub const PASSWORD_POLICY: i32 = 15118;
    /// No master key to protect a private key.
    pub const NO_MASTER_KEY: i32 = 15581;
    /// A master key already exists.
    pub const MASTER_KEY_EXISTS: i32 = 15578;
    /// Wrong password for OPEN/ALTER MASTER KEY.
    pub const WRONG_DECRYPTOR: i32 = 15313;
    /// DROP MASTER KEY while certificates are encrypted by it.
    pub const MASTER_KEY_IN_USE: i32 = 15580;
    /// Object not found (certificate, master key).
    pub const NOT_FOUND: i32 = 15151;
    /// Certificate name already exists.
    pub const CERT_EXISTS: i32 = 15232;
    /// Malformed certificate bytes or file.
    pub const CERT_INVALID: i32 = 15208;
    /// DROP CERTIFICATE while an endpoint uses it.
    pub const CERT_IN_USE: i32 = 15352;
    /// "Warning: The certificate you created is expired." (severity 10); also the number of the
    /// error when an expired certificate is used for a connection.
    pub const CERT_EXPIRED: i32 = 15214;
    /// "Warning: The certificate you created is not yet valid; its start date is in the future."
    pub const CERT_NOT_YET_VALID: i32 = 15215;
    /// Invalid date in START_DATE / EXPIRY_DATE.
    pub const BAD_DATE: i32 = 241;
    /// File could not be written (BACKUP CERTIFICATE).
    pub const FILE_WRITE: i32 = 15240;
    /// The certificate has no private key (BACKUP ... WITH PRIVATE KEY, endpoint use).
    pub const NO_PRIVATE_KEY: i32 = 15507;
    /// sp_validate_certificate_ca_chain / sp_certificate_add_issuer failure ("The certificate,
    /// asymmetric key, or private key data is invalid." followed by the reason).
    pub const CA_CHAIN: i32 = 15297;
}
