//! Trust for milink: the database master key, certificates (sys.certificates), trust by issuer,
//! and the managed instance's own CA. Storage lives in tables of the instance's master catalog;
//! private keys exist on disk only encrypted (AES-256-GCM) under the master key or instance key.

pub mod certinfo;
pub mod crypto;
pub mod dates;
pub mod error;
pub mod store;

pub use certinfo::{name_matches, parse_cert, CertInfo};
pub use dates::parse_sql_date;
pub use error::{codes, Result, TrustError};
pub use store::{
    check_password_policy, now_utc, parse_binary_literal, to_binary_literal, CertificateRow,
    ChainReport, CreatedCertificate, LocalIdentity, PeerAccepted, PeerRefusal, PeerTrust,
    SymmetricKeyRow, TrustStore, TrustedCert, TrustedIssuer, MASTER_KEY_ID, MASTER_KEY_NAME,
};
