//! Trust for milink: the database master key, certificates (sys.certificates), trust by issuer,
//! and the managed instance's own CA. Storage lives in tables of the instance's master catalog;
//! private keys exist on disk only encrypted (AES-256-GCM) under the master key or instance key.
//!
//! How statements map onto [`TrustStore`] (open it once per instance with the master connection
//! and the data directory; every method takes `&rusqlite::Connection` to master.db):
//!
//! | T-SQL | call |
//! |---|---|
//! | CREATE MASTER KEY ENCRYPTION BY PASSWORD = p | `create_master_key(c, p)` |
//! | OPEN MASTER KEY DECRYPTION BY PASSWORD = p | `open_master_key(c, p)` |
//! | ALTER MASTER KEY REGENERATE WITH ENCRYPTION BY PASSWORD = p | `regenerate_master_key(c, p)` |
//! | DROP MASTER KEY | `drop_master_key(c)` |
//! | sys.symmetric_keys | `symmetric_keys(c)` |
//! | CREATE CERTIFICATE n WITH SUBJECT = s [, START_DATE = a] [, EXPIRY_DATE = b] | `create_self_signed(c, n, s, a, b)` with [`parse_sql_date`]; send `warning` as an informational message |
//! | CREATE CERTIFICATE n FROM BINARY = 0x… / FROM FILE = f | `import_public(c, n, bytes)` / `import_public_file(c, n, f)` |
//! | BACKUP CERTIFICATE n TO FILE = f [WITH PRIVATE KEY (FILE = k, ENCRYPTION BY PASSWORD = p)] | `backup(c, n, f, Some((k, p)))` |
//! | DROP CERTIFICATE n | `drop_certificate(c, n)` (refused while `set_endpoint_certificate` binds it) |
//! | CERT_ID(n) / CERTENCODED(id) | `cert_id(c, n)` / `cert_encoded(c, id)` |
//! | sys.certificates | `certificates(c)` |
//! | EXEC sp_certificate_add_issuer @certid, N'pattern' | `add_issuer(c, id, pattern)` |
//! | EXEC sp_validate_certificate_ca_chain id | `validate_ca_chain(c, id, now_utc())` |
//! | CREATE/ALTER ENDPOINT … AUTHENTICATION = CERTIFICATE n | `set_endpoint_certificate(c, endpoint, Some(n))` |
//! | EXEC sp_get_endpoint_certificate @endpoint_type = 4 (managed) | `endpoint_certificate_public_key(c, fqdn)`, as [`to_binary_literal`] |
//! | `milink serve --managed` start-up | `ensure_managed_identity(c, fqdn, now, validity, renew_before)` |

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
