//! The trust store: master key, certificates, issuers, endpoint references and the managed
//! instance's CA, in tables of the instance's master catalog.

use crate::certinfo::{decode_cert_input, name_matches, parse_cert, signed_by, CertInfo};
use crate::crypto::{self, Key32, KDF_ARGON2ID_V1};
use crate::error::{codes, Result, TrustError};
use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// File holding the instance key (random, 0600). It protects the master key so restarts need no
/// password, and the managed instance's CA key, which has no T-SQL master key step.
pub const INSTANCE_KEY_FILE: &str = "trust_instance.key";
pub const MASTER_KEY_NAME: &str = "##MS_DatabaseMasterKey##";
pub const MASTER_KEY_ID: i32 = 101;
/// sys.certificates ids start here, as in SQL Server.
pub const FIRST_CERTIFICATE_ID: i64 = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS trust_master_key(
  id INTEGER PRIMARY KEY CHECK (id = 101),
  key_guid TEXT NOT NULL, create_date INTEGER NOT NULL, modify_date INTEGER NOT NULL,
  salt BLOB NOT NULL, kdf INTEGER NOT NULL,
  by_password BLOB NOT NULL, by_instance BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS trust_certificates(
  certificate_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE COLLATE NOCASE,
  der BLOB NOT NULL,
  pvk BLOB,
  pvt_key_last_backup_date INTEGER,
  create_date INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS trust_cert_issuers(
  certificate_id INTEGER NOT NULL, name_pattern TEXT NOT NULL COLLATE NOCASE,
  PRIMARY KEY (certificate_id, name_pattern));
CREATE TABLE IF NOT EXISTS trust_endpoint_certs(
  endpoint_name TEXT PRIMARY KEY COLLATE NOCASE, certificate_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS trust_instance_ca(
  id INTEGER PRIMARY KEY CHECK (id = 1), der BLOB NOT NULL, key BLOB NOT NULL,
  create_date INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS trust_instance_endpoint_certs(
  id INTEGER PRIMARY KEY AUTOINCREMENT, fqdn TEXT NOT NULL, der BLOB NOT NULL, key BLOB NOT NULL,
  not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, create_date INTEGER NOT NULL);
";

/// A row of sys.symmetric_keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymmetricKeyRow {
    pub name: String,
    pub principal_id: i32,
    pub symmetric_key_id: i32,
    pub key_length: i32,
    pub key_algorithm: String,
    pub algorithm_desc: String,
    pub create_date: NaiveDateTime,
    pub modify_date: NaiveDateTime,
    pub key_guid: String,
}

/// A row of sys.certificates, SQL Server's columns in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    pub name: String,
    pub certificate_id: i32,
    pub principal_id: i32,
    pub pvt_key_encryption_type: String,
    pub pvt_key_encryption_type_desc: String,
    pub is_active_for_begin_dialog: bool,
    pub issuer_name: String,
    pub cert_serial_number: String,
    pub sid: Vec<u8>,
    pub string_sid: String,
    pub subject: String,
    pub expiry_date: NaiveDateTime,
    pub start_date: NaiveDateTime,
    pub thumbprint: Vec<u8>,
    pub attested_by: Option<String>,
    pub pvt_key_last_backup_date: Option<NaiveDateTime>,
    pub key_length: i32,
}

/// An informational message (severity 10) for the client, e.g. 15214 for an expired certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub number: i32,
    pub message: String,
}

/// Result of CREATE CERTIFICATE: the id and any informational message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedCertificate {
    pub certificate_id: i32,
    pub warning: Option<Notice>,
}

/// A certificate and its decrypted private key, for presenting on a TLS connection.
/// The key is zeroed on drop and never printed.
#[derive(Clone)]
pub struct LocalIdentity {
    pub cert_name: String,
    pub cert_der: Vec<u8>,
    pub key_pkcs8: Zeroizing<Vec<u8>>,
    pub info: CertInfo,
}

impl std::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("cert_name", &self.cert_name)
            .field("subject", &self.info.subject)
            .field("thumbprint", &self.info.thumbprint_hex())
            .finish_non_exhaustive()
    }
}

/// A certificate imported on this instance (public part), as the transport sees it.
#[derive(Debug, Clone)]
pub struct TrustedCert {
    pub name: String,
    pub der: Vec<u8>,
    pub info: CertInfo,
}

/// An issuer registered with sp_certificate_add_issuer.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    pub cert: TrustedCert,
    pub name_pattern: String,
}

/// Why a peer's certificate was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRefusal {
    /// No certificate imported under the peer's name and no issuer registered for it.
    NotImported,
    /// Certificates exist for the peer's name but the presented one is none of them.
    WrongCertificate {
        expected: Vec<String>,
    },
    /// The presented certificate is outside its validity period.
    Expired {
        expiry: NaiveDateTime,
    },
    NotYetValid {
        start: NaiveDateTime,
    },
    /// Signed by a registered issuer but not naming the peer (binding violated).
    NameMismatch,
    /// Not signed by any registered issuer whose pattern covers the peer.
    UntrustedIssuer {
        issuers: Vec<String>,
    },
    Malformed(String),
}

/// Which rule accepted a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAccepted {
    Pinned {
        cert_name: String,
    },
    ByIssuer {
        issuer_cert: String,
        pattern: String,
    },
}

/// Everything needed to judge one peer's certificate, loaded from the store at connect time so
/// ALTERs and imports take effect on the next connection.
#[derive(Debug, Clone, Default)]
pub struct PeerTrust {
    pub peer_name: String,
    /// Certificates imported under the peer's name.
    pub pinned: Vec<TrustedCert>,
    /// Issuers whose pattern matches the peer's name.
    pub issuers: Vec<TrustedIssuer>,
}

impl PeerTrust {
    // One verdict per handshake: the size of the error value does not matter here.
    #[allow(clippy::result_large_err)]
    pub fn verify(
        &self,
        der: &[u8],
        now: NaiveDateTime,
    ) -> std::result::Result<PeerAccepted, (PeerRefusal, Option<CertInfo>)> {
        let info = parse_cert(der).map_err(|e| (PeerRefusal::Malformed(e.message), None))?;
        let time_check = |info: &CertInfo| {
            if now > info.expiry_date {
                Err((
                    PeerRefusal::Expired {
                        expiry: info.expiry_date,
                    },
                    Some(info.clone()),
                ))
            } else if now < info.start_date {
                Err((
                    PeerRefusal::NotYetValid {
                        start: info.start_date,
                    },
                    Some(info.clone()),
                ))
            } else {
                Ok(())
            }
        };
        if let Some(p) = self.pinned.iter().find(|p| p.der == der) {
            time_check(&info)?;
            return Ok(PeerAccepted::Pinned {
                cert_name: p.name.clone(),
            });
        }
        for iss in &self.issuers {
            if signed_by(der, &iss.cert.der) {
                time_check(&info)?;
                // The issuer's own validity matters too: an expired CA vouches for nothing.
                if !iss.cert.info.is_valid_at(now) {
                    continue;
                }
                if !info.names_peer(&self.peer_name) {
                    return Err((PeerRefusal::NameMismatch, Some(info)));
                }
                return Ok(PeerAccepted::ByIssuer {
                    issuer_cert: iss.cert.name.clone(),
                    pattern: iss.name_pattern.clone(),
                });
            }
        }
        if !self.pinned.is_empty() {
            return Err((
                PeerRefusal::WrongCertificate {
                    expected: self
                        .pinned
                        .iter()
                        .map(|p| {
                            format!(
                                "'{}' (subject '{}', thumbprint {})",
                                p.name,
                                p.info.subject,
                                p.info.thumbprint_hex()
                            )
                        })
                        .collect(),
                },
                Some(info),
            ));
        }
        if !self.issuers.is_empty() {
            return Err((
                PeerRefusal::UntrustedIssuer {
                    issuers: self
                        .issuers
                        .iter()
                        .map(|i| format!("'{}' for '{}'", i.cert.name, i.name_pattern))
                        .collect(),
                },
                Some(info),
            ));
        }
        Err((PeerRefusal::NotImported, Some(info)))
    }
}

/// Result of sp_validate_certificate_ca_chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Certificate names from the validated one up to a self-signed root.
    pub chain: Vec<String>,
}

pub fn now_utc() -> NaiveDateTime {
    Utc::now().naive_utc()
}

fn to_ms(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_millis()
}

fn from_ms(ms: i64) -> NaiveDateTime {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .naive_utc()
}

fn to_offset(t: NaiveDateTime) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.and_utc().timestamp())
        .map_err(|e| TrustError::internal(format!("date out of range: {e}")))
}

/// SQL Server's complexity rule: 8..=128 characters and 3 of the 4 classes (the same classes as
/// sqlexec's CREATE LOGIN check).
pub fn check_password_policy(password: &str) -> Result<()> {
    let n = password.chars().count();
    let classes = [
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if !(8..=128).contains(&n) || classes < 3 {
        return Err(TrustError::new(
            codes::PASSWORD_POLICY,
            "Password validation failed. The password does not meet the operating system policy requirements because it is not complex enough.",
        ));
    }
    Ok(())
}

fn not_found_cert(name: &str) -> TrustError {
    TrustError::new(
        codes::NOT_FOUND,
        format!("Cannot find the certificate '{name}', because it does not exist or you do not have permission."),
    )
}

fn no_master_key() -> TrustError {
    TrustError::new(
        codes::NO_MASTER_KEY,
        "Please create a master key in the database or open the master key in the session before performing this operation.",
    )
}

/// sid of a certificate-mapped principal: S-1-9-1 followed by the thumbprint as five sub-authorities.
fn cert_sid(thumbprint: &[u8]) -> (Vec<u8>, String) {
    let mut sid = vec![1u8, 6, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0];
    let mut s = String::from("S-1-9-1");
    for chunk in thumbprint.chunks(4).take(5) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        sid.extend_from_slice(&b);
        s.push_str(&format!("-{}", u32::from_le_bytes(b)));
    }
    (sid, s)
}

/// Generates an RSA-2048 key (SQL Server's size for new certificates) as PKCS#8 DER.
fn generate_rsa_pkcs8() -> Result<Zeroizing<Vec<u8>>> {
    use rsa::pkcs8::EncodePrivateKey;
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048)
        .map_err(|e| TrustError::internal(format!("RSA key generation failed: {e}")))?;
    let doc = key
        .to_pkcs8_der()
        .map_err(|e| TrustError::internal(format!("PKCS#8 encoding failed: {e}")))?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

fn random_serial() -> Result<rcgen::SerialNumber> {
    let mut b = crypto::random_bytes::<16>()?;
    b[0] &= 0x7f; // positive INTEGER
    b[0] |= 0x01; // and no leading zero byte, so it stays 16 bytes
    Ok(rcgen::SerialNumber::from_slice(&b))
}

fn rcgen_err(e: rcgen::Error) -> TrustError {
    TrustError::internal(format!("certificate generation failed: {e}"))
}

pub struct TrustStore {
    data_dir: PathBuf,
    instance_key: Key32,
}

impl TrustStore {
    /// Creates the tables if needed and loads (or creates) the instance key file.
    pub fn open(conn: &Connection, data_dir: &Path) -> Result<TrustStore> {
        conn.execute_batch(SCHEMA)?;
        let instance_key = load_or_create_instance_key(data_dir)?;
        Ok(TrustStore {
            data_dir: data_dir.to_path_buf(),
            instance_key,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    // ---------------------------------------------------------------- master key

    pub fn master_key_exists(&self, conn: &Connection) -> Result<bool> {
        Ok(conn
            .query_row("SELECT 1 FROM trust_master_key WHERE id = 101", [], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// CREATE MASTER KEY ENCRYPTION BY PASSWORD.
    pub fn create_master_key(&self, conn: &Connection, password: &str) -> Result<()> {
        if self.master_key_exists(conn)? {
            return Err(TrustError::new(
                codes::MASTER_KEY_EXISTS,
                "There is already a master key in the database. Please drop it before performing this statement.",
            ));
        }
        check_password_policy(password)?;
        let dmk = crypto::random_key()?;
        let guid = crypto::new_guid()?;
        let now = to_ms(now_utc());
        let (salt, by_pw, by_inst) = self.wrap_dmk(&dmk, password, &guid)?;
        conn.execute(
            "INSERT INTO trust_master_key(id, key_guid, create_date, modify_date, salt, kdf, by_password, by_instance)
             VALUES (101, ?1, ?2, ?2, ?3, ?4, ?5, ?6)",
            params![guid, now, salt, KDF_ARGON2ID_V1, by_pw, by_inst],
        )?;
        Ok(())
    }

    fn wrap_dmk(
        &self,
        dmk: &Key32,
        password: &str,
        guid: &str,
    ) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let salt = crypto::random_bytes::<16>()?.to_vec();
        let pw_key = crypto::derive_key(password, &salt, KDF_ARGON2ID_V1)?;
        let by_pw = crypto::seal(&pw_key, &format!("dmk/password/{guid}"), &dmk[..])?;
        let by_inst = crypto::seal(
            &self.instance_key,
            &format!("dmk/instance/{guid}"),
            &dmk[..],
        )?;
        Ok((salt, by_pw, by_inst))
    }

    /// OPEN MASTER KEY DECRYPTION BY PASSWORD: checks the password (the key itself is always
    /// available through the instance key, as SQL Server's service master key makes it).
    /// If the instance key no longer opens the master key (data directory restored without its
    /// key file), the correct password re-encrypts it under the current instance key, like
    /// ALTER MASTER KEY ADD ENCRYPTION BY SERVICE MASTER KEY.
    pub fn open_master_key(&self, conn: &Connection, password: &str) -> Result<()> {
        let dmk = self.dmk_by_password(conn, password)?;
        if self.dmk(conn).is_err() {
            let guid: String = conn.query_row(
                "SELECT key_guid FROM trust_master_key WHERE id = 101",
                [],
                |r| r.get(0),
            )?;
            let blob = crypto::seal(
                &self.instance_key,
                &format!("dmk/instance/{guid}"),
                &dmk[..],
            )?;
            conn.execute(
                "UPDATE trust_master_key SET by_instance = ?1 WHERE id = 101",
                [blob],
            )?;
        }
        Ok(())
    }

    fn dmk_by_password(&self, conn: &Connection, password: &str) -> Result<Key32> {
        let row: Option<(String, Vec<u8>, u32, Vec<u8>)> = conn
            .query_row(
                "SELECT key_guid, salt, kdf, by_password FROM trust_master_key WHERE id = 101",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let (guid, salt, kdf, blob) = row.ok_or_else(|| {
            TrustError::new(
                codes::NOT_FOUND,
                "Cannot find the symmetric key '##MS_DatabaseMasterKey##', because it does not exist or you do not have permission.",
            )
        })?;
        let k = crypto::derive_key(password, &salt, kdf)?;
        let plain = crypto::open(&k, &format!("dmk/password/{guid}"), &blob).ok_or_else(|| {
            TrustError::new(
                codes::WRONG_DECRYPTOR,
                "The key is not encrypted using the specified decryptor.",
            )
        })?;
        to_key32(&plain)
    }

    /// The master key, via the instance key (no password needed after a restart).
    fn dmk(&self, conn: &Connection) -> Result<Key32> {
        let row: Option<(String, Vec<u8>)> = conn
            .query_row(
                "SELECT key_guid, by_instance FROM trust_master_key WHERE id = 101",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (guid, blob) = row.ok_or_else(no_master_key)?;
        let plain = crypto::open(&self.instance_key, &format!("dmk/instance/{guid}"), &blob)
            .ok_or_else(|| {
                TrustError::new(
                    codes::NO_MASTER_KEY,
                    "Please create a master key in the database or open the master key in the session before performing this operation. (The instance key no longer decrypts the master key; OPEN MASTER KEY with its password.)",
                )
            })?;
        to_key32(&plain)
    }

    /// ALTER MASTER KEY REGENERATE WITH ENCRYPTION BY PASSWORD: a new key; every private key is
    /// re-encrypted under it in one transaction.
    pub fn regenerate_master_key(&self, conn: &Connection, password: &str) -> Result<()> {
        check_password_policy(password)?;
        let old = self.dmk(conn)?;
        let new = crypto::random_key()?;
        let guid = crypto::new_guid()?;
        let (salt, by_pw, by_inst) = self.wrap_dmk(&new, password, &guid)?;
        let tx = conn.unchecked_transaction()?;
        let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = {
            let mut st = tx.prepare(
                "SELECT certificate_id, der, pvk FROM trust_certificates WHERE pvk IS NOT NULL",
            )?;
            let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            it.collect::<rusqlite::Result<_>>()?
        };
        for (id, der, pvk) in rows {
            let aad = pvk_aad(&der);
            let plain = crypto::open(&old, &aad, &pvk).ok_or_else(|| {
                TrustError::internal(format!("private key of certificate {id} does not decrypt"))
            })?;
            let blob = crypto::seal(&new, &aad, &plain)?;
            tx.execute(
                "UPDATE trust_certificates SET pvk = ?1 WHERE certificate_id = ?2",
                params![blob, id],
            )?;
        }
        tx.execute(
            "UPDATE trust_master_key SET key_guid = ?1, modify_date = ?2, salt = ?3, kdf = ?4, by_password = ?5, by_instance = ?6 WHERE id = 101",
            params![guid, to_ms(now_utc()), salt, KDF_ARGON2ID_V1, by_pw, by_inst],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// ALTER MASTER KEY ... ENCRYPTION BY PASSWORD change: same key, new password (needs the old).
    pub fn change_master_key_password(
        &self,
        conn: &Connection,
        old_password: &str,
        new_password: &str,
    ) -> Result<()> {
        let dmk = self.dmk_by_password(conn, old_password)?;
        check_password_policy(new_password)?;
        let guid: String = conn.query_row(
            "SELECT key_guid FROM trust_master_key WHERE id = 101",
            [],
            |r| r.get(0),
        )?;
        let (salt, by_pw, by_inst) = self.wrap_dmk(&dmk, new_password, &guid)?;
        conn.execute(
            "UPDATE trust_master_key SET modify_date = ?1, salt = ?2, kdf = ?3, by_password = ?4, by_instance = ?5 WHERE id = 101",
            params![to_ms(now_utc()), salt, KDF_ARGON2ID_V1, by_pw, by_inst],
        )?;
        Ok(())
    }

    /// DROP MASTER KEY: refused while a certificate's private key is encrypted by it.
    pub fn drop_master_key(&self, conn: &Connection) -> Result<()> {
        if !self.master_key_exists(conn)? {
            return Err(TrustError::new(
                codes::NOT_FOUND,
                "Cannot drop the master key, because it does not exist or you do not have permission.",
            ));
        }
        let dependent: Option<String> = conn
            .query_row(
                "SELECT name FROM trust_certificates WHERE pvk IS NOT NULL ORDER BY certificate_id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(name) = dependent {
            return Err(TrustError::new(
                codes::MASTER_KEY_IN_USE,
                format!("Cannot drop master key because certificate '{name}' is encrypted by it."),
            ));
        }
        conn.execute("DELETE FROM trust_master_key WHERE id = 101", [])?;
        Ok(())
    }

    /// sys.symmetric_keys (the master key row, if any).
    pub fn symmetric_keys(&self, conn: &Connection) -> Result<Vec<SymmetricKeyRow>> {
        let mut st =
            conn.prepare("SELECT key_guid, create_date, modify_date FROM trust_master_key")?;
        let rows = st.query_map([], |r| {
            Ok(SymmetricKeyRow {
                name: MASTER_KEY_NAME.to_string(),
                principal_id: 1,
                symmetric_key_id: MASTER_KEY_ID,
                key_length: 256,
                key_algorithm: "A3".to_string(),
                algorithm_desc: "AES_256".to_string(),
                create_date: from_ms(r.get(1)?),
                modify_date: from_ms(r.get(2)?),
                key_guid: r.get(0)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---------------------------------------------------------------- certificates

    fn next_certificate_id(conn: &Connection) -> Result<i64> {
        let max: Option<i64> = conn.query_row(
            "SELECT MAX(certificate_id) FROM trust_certificates",
            [],
            |r| r.get(0),
        )?;
        Ok(max.map_or(FIRST_CERTIFICATE_ID, |m| (m + 1).max(FIRST_CERTIFICATE_ID)))
    }

    fn ensure_name_free(conn: &Connection, name: &str) -> Result<()> {
        if name.trim().is_empty() || name.chars().count() > 128 {
            return Err(TrustError::new(
                15032,
                format!(
                    "The certificate name '{name}' is not valid: it must have 1 to 128 characters."
                ),
            ));
        }
        let exists = conn
            .query_row(
                "SELECT 1 FROM trust_certificates WHERE name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists {
            return Err(TrustError::new(
                codes::CERT_EXISTS,
                format!("A certificate with name '{name}' already exists or this certificate already has been added to the database."),
            ));
        }
        Ok(())
    }

    /// CREATE CERTIFICATE name WITH SUBJECT = …, [START_DATE = …,] [EXPIRY_DATE = …]: an RSA-2048
    /// self-signed SHA-256 certificate, private key encrypted by the master key. Defaults: start
    /// now, expiry one year later (SQL Server's defaults).
    pub fn create_self_signed(
        &self,
        conn: &Connection,
        name: &str,
        subject: &str,
        start: Option<NaiveDateTime>,
        expiry: Option<NaiveDateTime>,
    ) -> Result<CreatedCertificate> {
        Self::ensure_name_free(conn, name)?;
        let dmk = self.dmk(conn)?;
        if subject.is_empty() || subject.chars().count() > 128 {
            return Err(TrustError::new(
                15297,
                "The certificate subject must have 1 to 128 characters.",
            ));
        }
        let now = now_utc();
        let explicit_start = start.is_some();
        let start = start.unwrap_or(now);
        let expiry = expiry.unwrap_or_else(|| start + chrono::Duration::days(365));
        // Only an explicit START_DATE after EXPIRY_DATE is an error; a defaulted start with a
        // past expiry (the seed's '03/30/2025') creates an already-expired certificate + warning.
        if explicit_start && expiry <= start {
            return Err(TrustError::new(
                codes::BAD_DATE,
                format!("The certificate's EXPIRY_DATE ({expiry}) must be later than its START_DATE ({start})."),
            ));
        }
        let pkcs8 = generate_rsa_pkcs8()?;
        let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &pki_types::PrivatePkcs8KeyDer::from(&pkcs8[..]),
            &rcgen::PKCS_RSA_SHA256,
        )
        .map_err(rcgen_err)?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, subject);
        p.not_before = to_offset(start)?;
        p.not_after = to_offset(expiry)?;
        p.serial_number = Some(random_serial()?);
        let cert = p.self_signed(&kp).map_err(rcgen_err)?;
        let der = cert.der().to_vec();
        let pvk = crypto::seal(&dmk, &pvk_aad(&der), &pkcs8)?;
        let id = Self::next_certificate_id(conn)?;
        conn.execute(
            "INSERT INTO trust_certificates(certificate_id, name, der, pvk, create_date) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, name, der, pvk, to_ms(now)],
        )?;
        let warning = validity_warning(name, start, expiry, now);
        Ok(CreatedCertificate {
            certificate_id: id as i32,
            warning,
        })
    }

    /// CREATE CERTIFICATE name FROM BINARY = 0x… / FROM FILE = '…' (public part only; DER or PEM).
    /// Malformed input stores nothing.
    pub fn import_public(
        &self,
        conn: &Connection,
        name: &str,
        bytes: &[u8],
    ) -> Result<CreatedCertificate> {
        let der = decode_cert_input(bytes)?;
        Self::ensure_name_free(conn, name)?;
        let info = parse_cert(&der)?;
        let id = Self::next_certificate_id(conn)?;
        let now = now_utc();
        conn.execute(
            "INSERT INTO trust_certificates(certificate_id, name, der, pvk, create_date) VALUES (?1, ?2, ?3, NULL, ?4)",
            params![id, name, der, to_ms(now)],
        )?;
        let warning = validity_warning(name, info.start_date, info.expiry_date, now);
        Ok(CreatedCertificate {
            certificate_id: id as i32,
            warning,
        })
    }

    /// The managed-instance path (`milink serve --managed`, no T-SQL): make sure the CA exists and
    /// a current endpoint certificate for `fqdn` is issued (renewing when within `renew_before`
    /// of expiry); returns the DER to present / publish.
    pub fn ensure_managed_identity(
        &self,
        conn: &Connection,
        fqdn: &str,
        now: NaiveDateTime,
        validity: chrono::Duration,
        renew_before: chrono::Duration,
    ) -> Result<Vec<u8>> {
        self.ensure_instance_ca(conn, &format!("milink managed instance CA ({fqdn})"))?;
        self.rotate_endpoint_certificate(conn, fqdn, now, validity, renew_before)?;
        Ok(self.instance_endpoint_identity(conn, fqdn, now)?.cert_der)
    }

    /// Imports from the "0x…" text form (the PublicBlob of the REST API / PowerShell path).
    pub fn import_public_hex(
        &self,
        conn: &Connection,
        name: &str,
        hex: &str,
    ) -> Result<CreatedCertificate> {
        let bytes = parse_binary_literal(hex)?;
        self.import_public(conn, name, &bytes)
    }

    /// CREATE CERTIFICATE name FROM FILE = 'path'.
    pub fn import_public_file(
        &self,
        conn: &Connection,
        name: &str,
        path: &Path,
    ) -> Result<CreatedCertificate> {
        let bytes = fs::read(path).map_err(|e| {
            TrustError::new(
                codes::CERT_INVALID,
                format!(
                    "The certificate, asymmetric key, or private key file is not valid or does not exist; or you do not have permissions for it. ('{}': {e})",
                    path.display()
                ),
            )
        })?;
        self.import_public(conn, name, &bytes)
    }

    fn cert_row_by_name(conn: &Connection, name: &str) -> Result<(i64, Vec<u8>, Option<Vec<u8>>)> {
        conn.query_row(
            "SELECT certificate_id, der, pvk FROM trust_certificates WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| not_found_cert(name))
    }

    /// CERT_ID(name).
    pub fn cert_id(&self, conn: &Connection, name: &str) -> Result<Option<i32>> {
        Ok(conn
            .query_row(
                "SELECT certificate_id FROM trust_certificates WHERE name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|v| v as i32))
    }

    /// CERTENCODED(id): the DER bytes.
    pub fn cert_encoded(&self, conn: &Connection, certificate_id: i32) -> Result<Option<Vec<u8>>> {
        Ok(conn
            .query_row(
                "SELECT der FROM trust_certificates WHERE certificate_id = ?1",
                [certificate_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// BACKUP CERTIFICATE name TO FILE = path [WITH PRIVATE KEY (FILE = pk_path, ENCRYPTION BY
    /// PASSWORD = pw)]. The private key file is PKCS#8 encrypted under a key derived from `pw`
    /// (Argon2id + AES-256-GCM, our own container: "MILINK-PVK1" header, salt, KDF id, blob).
    pub fn backup(
        &self,
        conn: &Connection,
        name: &str,
        path: &Path,
        private_key: Option<(&Path, &str)>,
    ) -> Result<()> {
        let (id, der, pvk) = Self::cert_row_by_name(conn, name)?;
        let exists_err = |p: &Path| {
            TrustError::new(
                codes::FILE_WRITE,
                format!("Cannot write into file '{}'. Verify that you have write permissions, that the file path is valid, and that the file does not already exist.", p.display()),
            )
        };
        if path.exists() {
            return Err(exists_err(path));
        }
        let mut blob = None;
        if let Some((pk_path, pw)) = private_key {
            check_password_policy(pw)?;
            if pk_path.exists() {
                return Err(exists_err(pk_path));
            }
            let pvk = pvk.ok_or_else(|| {
                TrustError::new(
                    codes::NO_PRIVATE_KEY,
                    format!("The certificate '{name}' does not have a private key."),
                )
            })?;
            let dmk = self.dmk(conn)?;
            let plain = crypto::open(&dmk, &pvk_aad(&der), &pvk).ok_or_else(|| {
                TrustError::internal("private key does not decrypt under the master key")
            })?;
            let salt = crypto::random_bytes::<16>()?;
            let k = crypto::derive_key(pw, &salt, KDF_ARGON2ID_V1)?;
            let sealed = crypto::seal(&k, "milink-pvk-backup", &plain)?;
            let mut out = b"MILINK-PVK1".to_vec();
            out.extend_from_slice(&salt);
            out.extend_from_slice(&KDF_ARGON2ID_V1.to_be_bytes());
            out.extend_from_slice(&sealed);
            blob = Some((pk_path, out));
        }
        write_new_file(path, &der, 0o644).map_err(|_| exists_err(path))?;
        if let Some((pk_path, out)) = blob {
            write_new_file(pk_path, &out, 0o600).map_err(|_| exists_err(pk_path))?;
            conn.execute(
                "UPDATE trust_certificates SET pvt_key_last_backup_date = ?1 WHERE certificate_id = ?2",
                params![to_ms(now_utc()), id],
            )?;
        }
        Ok(())
    }

    /// DROP CERTIFICATE: refused while an endpoint uses it. Its issuer registrations go with it.
    pub fn drop_certificate(&self, conn: &Connection, name: &str) -> Result<()> {
        let (id, _, _) = Self::cert_row_by_name(conn, name)?;
        let ep: Option<String> = conn
            .query_row(
                "SELECT endpoint_name FROM trust_endpoint_certs WHERE certificate_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(ep) = ep {
            return Err(TrustError::new(
                codes::CERT_IN_USE,
                format!("The certificate '{name}' cannot be dropped because it is used by endpoint '{ep}'. Alter or drop the endpoint first."),
            ));
        }
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "DELETE FROM trust_cert_issuers WHERE certificate_id = ?1",
            [id],
        )?;
        tx.execute(
            "DELETE FROM trust_certificates WHERE certificate_id = ?1",
            [id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records that `endpoint` authenticates with certificate `cert_name` (None clears it), so
    /// DROP CERTIFICATE can refuse. The certificate must have a private key.
    pub fn set_endpoint_certificate(
        &self,
        conn: &Connection,
        endpoint: &str,
        cert_name: Option<&str>,
    ) -> Result<Option<i32>> {
        match cert_name {
            None => {
                conn.execute(
                    "DELETE FROM trust_endpoint_certs WHERE endpoint_name = ?1",
                    [endpoint],
                )?;
                Ok(None)
            }
            Some(c) => {
                let (id, _, pvk) = Self::cert_row_by_name(conn, c)?;
                if pvk.is_none() {
                    return Err(TrustError::new(
                        codes::NO_PRIVATE_KEY,
                        format!("The certificate '{c}' has no private key; an endpoint can only authenticate with a certificate whose private key is on this instance."),
                    ));
                }
                conn.execute(
                    "INSERT INTO trust_endpoint_certs(endpoint_name, certificate_id) VALUES (?1, ?2)
                     ON CONFLICT(endpoint_name) DO UPDATE SET certificate_id = excluded.certificate_id",
                    params![endpoint, id],
                )?;
                Ok(Some(id as i32))
            }
        }
    }

    /// sys.certificates.
    pub fn certificates(&self, conn: &Connection) -> Result<Vec<CertificateRow>> {
        let mut st = conn.prepare(
            "SELECT certificate_id, name, der, pvk IS NOT NULL, pvt_key_last_backup_date FROM trust_certificates ORDER BY certificate_id",
        )?;
        type Raw = (i64, String, Vec<u8>, bool, Option<i64>);
        let raw: Vec<Raw> = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        raw.into_iter()
            .map(|(id, name, der, has_pvk, backup)| {
                let info = parse_cert(&der)?;
                let (sid, string_sid) = cert_sid(&info.thumbprint);
                let (t, d) = if has_pvk {
                    ("MK", "ENCRYPTED_BY_MASTER_KEY")
                } else {
                    ("NA", "NO_PRIVATE_KEY")
                };
                Ok(CertificateRow {
                    name,
                    certificate_id: id as i32,
                    principal_id: 1,
                    pvt_key_encryption_type: t.into(),
                    pvt_key_encryption_type_desc: d.into(),
                    is_active_for_begin_dialog: true,
                    issuer_name: info.issuer_name,
                    cert_serial_number: info.cert_serial_number,
                    sid,
                    string_sid,
                    subject: info.subject,
                    expiry_date: info.expiry_date,
                    start_date: info.start_date,
                    thumbprint: info.thumbprint,
                    attested_by: None,
                    pvt_key_last_backup_date: backup.map(from_ms),
                    key_length: info.key_length,
                })
            })
            .collect()
    }

    /// The certificate and decrypted private key an endpoint presents. Refuses an expired or
    /// not-yet-valid certificate with a message naming it and its dates.
    pub fn local_identity(
        &self,
        conn: &Connection,
        cert_name: &str,
        now: NaiveDateTime,
    ) -> Result<LocalIdentity> {
        let (_, der, pvk) = Self::cert_row_by_name(conn, cert_name)?;
        let info = parse_cert(&der)?;
        let pvk = pvk.ok_or_else(|| {
            TrustError::new(
                codes::NO_PRIVATE_KEY,
                format!("The certificate '{cert_name}' has no private key on this instance, so it cannot authenticate an endpoint."),
            )
        })?;
        if info.is_expired_at(now) {
            return Err(TrustError::new(
                codes::CERT_EXPIRED,
                format!(
                    "The certificate '{cert_name}' (subject '{}', thumbprint {}) expired on {}; connections using it are refused. Create a new certificate and ALTER ENDPOINT to use it.",
                    info.subject,
                    info.thumbprint_hex(),
                    info.expiry_date
                ),
            ));
        }
        if now < info.start_date {
            return Err(TrustError::new(
                codes::CERT_NOT_YET_VALID,
                format!(
                    "The certificate '{cert_name}' (subject '{}', thumbprint {}) is not valid until {}.",
                    info.subject,
                    info.thumbprint_hex(),
                    info.start_date
                ),
            ));
        }
        let dmk = self.dmk(conn)?;
        let key = crypto::open(&dmk, &pvk_aad(&der), &pvk).ok_or_else(|| {
            TrustError::internal(format!(
                "the private key of '{cert_name}' does not decrypt under the master key"
            ))
        })?;
        Ok(LocalIdentity {
            cert_name: cert_name.to_string(),
            cert_der: der,
            key_pkcs8: key,
            info,
        })
    }

    fn trusted(
        conn: &Connection,
        sql: &str,
        arg: &str,
    ) -> Result<Vec<(TrustedCert, Option<String>)>> {
        let mut st = conn.prepare(sql)?;
        let raw: Vec<(String, Vec<u8>, Option<String>)> = st
            .query_map([arg], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        raw.into_iter()
            .map(|(name, der, pat)| {
                let info = parse_cert(&der)?;
                Ok((TrustedCert { name, der, info }, pat))
            })
            .collect()
    }

    /// The certificates imported under `peer_name` and the issuers whose pattern covers it.
    pub fn peer_trust(&self, conn: &Connection, peer_name: &str) -> Result<PeerTrust> {
        let pinned = Self::trusted(
            conn,
            "SELECT name, der, NULL FROM trust_certificates WHERE name = ?1",
            peer_name,
        )?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
        let issuers = Self::trusted(
            conn,
            "SELECT c.name, c.der, i.name_pattern FROM trust_cert_issuers i JOIN trust_certificates c USING (certificate_id) WHERE ?1 <> ''",
            peer_name,
        )?
        .into_iter()
        .filter_map(|(cert, pat)| {
            let pat = pat?;
            name_matches(&pat, peer_name).then_some(TrustedIssuer { cert, name_pattern: pat })
        })
        .collect();
        Ok(PeerTrust {
            peer_name: peer_name.to_string(),
            pinned,
            issuers,
        })
    }

    // ---------------------------------------------------------------- trust by issuer

    /// sp_certificate_add_issuer @certid, N'pattern'.
    pub fn add_issuer(
        &self,
        conn: &Connection,
        certificate_id: i32,
        name_pattern: &str,
    ) -> Result<()> {
        let pat = name_pattern.trim();
        let valid = !pat.is_empty()
            && pat.len() <= 255
            && !pat[pat.starts_with("*.") as usize * 2..].contains('*')
            && pat
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.*_".contains(c));
        if !valid {
            return Err(TrustError::new(
                codes::CA_CHAIN,
                format!("The name pattern '{name_pattern}' is not valid: use a host name or '*.' followed by a domain."),
            ));
        }
        let der = self
            .cert_encoded(conn, certificate_id)?
            .ok_or_else(|| not_found_cert(&certificate_id.to_string()))?;
        let info = parse_cert(&der)?;
        if !info.is_ca && !info.self_issued {
            return Err(TrustError::new(
                codes::CA_CHAIN,
                format!("Certificate {certificate_id} (subject '{}') is not a certificate authority and cannot be registered as an issuer.", info.subject),
            ));
        }
        let added = conn.execute(
            "INSERT OR IGNORE INTO trust_cert_issuers(certificate_id, name_pattern) VALUES (?1, ?2)",
            params![certificate_id, pat],
        )?;
        if added == 0 {
            let name: String = conn.query_row(
                "SELECT name FROM trust_certificates WHERE certificate_id = ?1",
                [certificate_id],
                |r| r.get(0),
            )?;
            return Err(TrustError::new(
                codes::CA_CHAIN,
                format!("The certificate '{name}' has been already added as a trusted issuer for DNS name '{pat}'"),
            ));
        }
        Ok(())
    }

    /// Issuers registered: (certificate_id, pattern).
    pub fn issuers(&self, conn: &Connection) -> Result<Vec<(i32, String)>> {
        let mut st = conn
            .prepare("SELECT certificate_id, name_pattern FROM trust_cert_issuers ORDER BY 1, 2")?;
        let r = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as i32, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(r)
    }

    /// sp_validate_certificate_ca_chain id: the certificate must be currently valid and chain,
    /// through certificates on this instance, to a valid self-signed root whose signatures verify.
    pub fn validate_ca_chain(
        &self,
        conn: &Connection,
        certificate_id: i32,
        now: NaiveDateTime,
    ) -> Result<ChainReport> {
        let mut st = conn.prepare("SELECT certificate_id, name, der FROM trust_certificates")?;
        let all: Vec<(i64, String, Vec<u8>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let (_, mut name, mut der) = all
            .iter()
            .find(|(id, _, _)| *id == certificate_id as i64)
            .cloned()
            .ok_or_else(|| not_found_cert(&certificate_id.to_string()))?;
        let mut chain = Vec::new();
        for _ in 0..8 {
            let info = parse_cert(&der)?;
            if !info.is_valid_at(now) {
                return Err(TrustError::new(
                    codes::CA_CHAIN,
                    format!("Certificate chain validation failed: certificate '{name}' (subject '{}') is valid only from {} to {}.", info.subject, info.start_date, info.expiry_date),
                ));
            }
            chain.push(name.clone());
            if info.self_issued {
                if !signed_by(&der, &der) {
                    return Err(TrustError::new(
                        codes::CA_CHAIN,
                        format!("Certificate chain validation failed: the self-signed certificate '{name}' has an invalid signature."),
                    ));
                }
                return Ok(ChainReport { chain });
            }
            match all.iter().find(|(_, _, d)| *d != der && signed_by(&der, d)) {
                Some((_, n, d)) => {
                    name = n.clone();
                    der = d.clone();
                }
                None => {
                    return Err(TrustError::new(
                        codes::CA_CHAIN,
                        format!("Certificate chain validation failed: the issuer '{}' of certificate '{name}' is not on this instance. Import it with CREATE CERTIFICATE … FROM FILE/BINARY.", info.issuer_name),
                    ))
                }
            }
        }
        Err(TrustError::new(
            codes::CA_CHAIN,
            "Certificate chain validation failed: chain too long.",
        ))
    }

    // ---------------------------------------------------------------- managed-instance CA

    /// Creates the instance CA (ECDSA P-256, 10 years) if absent; returns its DER. Its key is
    /// encrypted under the instance key.
    pub fn ensure_instance_ca(&self, conn: &Connection, subject: &str) -> Result<Vec<u8>> {
        if let Some(der) = conn
            .query_row("SELECT der FROM trust_instance_ca WHERE id = 1", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
        {
            return Ok(der);
        }
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_err)?;
        let now = now_utc();
        let p = ca_params(subject, now, now + chrono::Duration::days(3650))?;
        let cert = p.self_signed(&kp).map_err(rcgen_err)?;
        let der = cert.der().to_vec();
        let key = Zeroizing::new(kp.serialize_der());
        let blob = crypto::seal(&self.instance_key, "instance-ca", &key)?;
        conn.execute(
            "INSERT INTO trust_instance_ca(id, der, key, create_date) VALUES (1, ?1, ?2, ?3)",
            params![der, blob, to_ms(now)],
        )?;
        Ok(der)
    }

    /// The CA certificate (for trust by issuer on the other side).
    pub fn instance_ca_certificate(&self, conn: &Connection) -> Result<Option<Vec<u8>>> {
        Ok(conn
            .query_row("SELECT der FROM trust_instance_ca WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Issues an endpoint certificate for `fqdn` valid over [not_before, not_after], signed by the
    /// instance CA; its key is kept under the instance key.
    pub fn issue_endpoint_certificate(
        &self,
        conn: &Connection,
        fqdn: &str,
        not_before: NaiveDateTime,
        not_after: NaiveDateTime,
    ) -> Result<Vec<u8>> {
        let (ca_der, ca_blob): (Vec<u8>, Vec<u8>) = conn
            .query_row(
                "SELECT der, key FROM trust_instance_ca WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| {
                TrustError::internal(
                    "the instance CA does not exist; call ensure_instance_ca first",
                )
            })?;
        let ca_key =
            crypto::open(&self.instance_key, "instance-ca", &ca_blob).ok_or_else(|| {
                TrustError::internal("the instance CA key does not decrypt under the instance key")
            })?;
        let ca_kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &pki_types::PrivatePkcs8KeyDer::from(&ca_key[..]),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )
        .map_err(rcgen_err)?;
        let ca_info = parse_cert(&ca_der)?;
        // Rebuilding the CA's parameters reproduces its subject DN byte for byte.
        let ca_p = ca_params(&ca_info.subject, ca_info.start_date, ca_info.expiry_date)?;
        let issuer = rcgen::Issuer::new(ca_p, &ca_kp);
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_err)?;
        let mut p = rcgen::CertificateParams::new(vec![fqdn.to_string()]).map_err(rcgen_err)?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, fqdn);
        p.not_before = to_offset(not_before)?;
        p.not_after = to_offset(not_after)?;
        p.serial_number = Some(random_serial()?);
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&kp, &issuer).map_err(rcgen_err)?;
        let der = cert.der().to_vec();
        let key = Zeroizing::new(kp.serialize_der());
        let blob = crypto::seal(&self.instance_key, &pvk_aad(&der), &key)?;
        conn.execute(
            "INSERT INTO trust_instance_endpoint_certs(fqdn, der, key, not_before, not_after, create_date) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![fqdn, der, blob, to_ms(not_before), to_ms(not_after), to_ms(now_utc())],
        )?;
        Ok(der)
    }

    /// The endpoint identity to present now: the newest issued certificate for `fqdn` that is
    /// valid at `now` (after a rotation the new one wins while the old stays valid).
    pub fn instance_endpoint_identity(
        &self,
        conn: &Connection,
        fqdn: &str,
        now: NaiveDateTime,
    ) -> Result<LocalIdentity> {
        let t = to_ms(now);
        let (der, blob): (Vec<u8>, Vec<u8>) = conn
            .query_row(
                "SELECT der, key FROM trust_instance_endpoint_certs WHERE fqdn = ?1 AND not_before <= ?2 AND not_after >= ?2 ORDER BY not_before DESC, id DESC LIMIT 1",
                params![fqdn, t],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .map(Ok)
            .unwrap_or_else(|| Err(self.no_endpoint_cert(conn, fqdn, now)))?;
        let key = crypto::open(&self.instance_key, &pvk_aad(&der), &blob).ok_or_else(|| {
            TrustError::internal("endpoint key does not decrypt under the instance key")
        })?;
        let info = parse_cert(&der)?;
        Ok(LocalIdentity {
            cert_name: fqdn.to_string(),
            cert_der: der,
            key_pkcs8: key,
            info,
        })
    }

    /// Why no endpoint certificate is usable: names the newest one and its validity.
    fn no_endpoint_cert(&self, conn: &Connection, fqdn: &str, now: NaiveDateTime) -> TrustError {
        let newest: Option<Vec<u8>> = conn
            .query_row(
                "SELECT der FROM trust_instance_endpoint_certs WHERE fqdn = ?1 ORDER BY not_after DESC LIMIT 1",
                [fqdn],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten();
        let f = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
        match newest.and_then(|d| parse_cert(&d).ok()) {
            Some(i) if i.expiry_date < now => TrustError::new(
                codes::CERT_EXPIRED,
                format!(
                    "The endpoint certificate of '{fqdn}' (subject '{}', thumbprint {}) expired on {} and was not renewed; issue the next one (rotate_endpoint_certificate).",
                    i.subject, i.thumbprint_hex(), f(i.expiry_date)
                ),
            ),
            Some(i) => TrustError::new(
                codes::CERT_NOT_YET_VALID,
                format!(
                    "The endpoint certificate of '{fqdn}' (subject '{}', thumbprint {}) is not valid until {}.",
                    i.subject, i.thumbprint_hex(), f(i.start_date)
                ),
            ),
            None => TrustError::new(
                codes::CERT_EXPIRED,
                format!("No endpoint certificate has been issued for '{fqdn}'."),
            ),
        }
    }

    /// sp_get_endpoint_certificate @endpoint_type = 4: the DER of the current endpoint certificate.
    pub fn endpoint_certificate_public_key(
        &self,
        conn: &Connection,
        fqdn: &str,
    ) -> Result<Vec<u8>> {
        Ok(self
            .instance_endpoint_identity(conn, fqdn, now_utc())?
            .cert_der)
    }

    /// Rotation: when the newest certificate for `fqdn` expires within `renew_before` of `now` (or
    /// none is valid), issue the next one, valid from `now` for `validity`. The old one stays valid
    /// until its own expiry, so both overlap. Returns the new DER when one was issued.
    pub fn rotate_endpoint_certificate(
        &self,
        conn: &Connection,
        fqdn: &str,
        now: NaiveDateTime,
        validity: chrono::Duration,
        renew_before: chrono::Duration,
    ) -> Result<Option<Vec<u8>>> {
        let newest: Option<i64> = conn.query_row(
            "SELECT MAX(not_after) FROM trust_instance_endpoint_certs WHERE fqdn = ?1 AND not_before <= ?2",
            params![fqdn, to_ms(now)],
            |r| r.get(0),
        )?;
        let due = match newest {
            None => true,
            Some(na) => from_ms(na) - renew_before <= now,
        };
        if !due {
            return Ok(None);
        }
        // Start a little in the past so a peer whose clock lags still accepts it.
        let start = now - chrono::Duration::minutes(5);
        self.issue_endpoint_certificate(conn, fqdn, start, now + validity)
            .map(Some)
    }
}

/// "0x…" → bytes; anything else is a clear 15208-class error.
pub fn parse_binary_literal(s: &str) -> Result<Vec<u8>> {
    let t = s.trim();
    let bad = |why: &str| {
        TrustError::new(
            codes::CERT_INVALID,
            format!("The certificate, asymmetric key, or private key file is not valid or does not exist; or you do not have permissions for it. (binary literal: {why})"),
        )
    };
    let h = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .ok_or_else(|| bad("it must start with 0x"))?;
    if h.is_empty() || h.len() % 2 != 0 {
        return Err(bad("it needs an even, non-zero number of hex digits"));
    }
    (0..h.len())
        .step_by(2)
        .map(|i| {
            h.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| bad("non-hex character"))
        })
        .collect()
}

/// bytes → "0x…" (upper case, as SQL Server prints varbinary).
pub fn to_binary_literal(b: &[u8]) -> String {
    format!("0x{}", crypto::hex_upper(b))
}

fn ca_params(
    subject: &str,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> Result<rcgen::CertificateParams> {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, subject);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = to_offset(start)?;
    p.not_after = to_offset(end)?;
    Ok(p)
}

/// SQL Server's 15214 / 15215 warnings, naming the certificate and the date.
fn validity_warning(
    name: &str,
    start: NaiveDateTime,
    expiry: NaiveDateTime,
    now: NaiveDateTime,
) -> Option<Notice> {
    let f = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    if expiry < now {
        Some(Notice {
            number: codes::CERT_EXPIRED,
            message: format!(
                "Warning: The certificate you created is expired. Certificate '{name}' has EXPIRY_DATE {}; it was created, but database mirroring connections using it will be refused.",
                f(expiry)
            ),
        })
    } else if start > now {
        Some(Notice {
            number: codes::CERT_NOT_YET_VALID,
            message: format!(
                "Warning: The certificate you created is not yet valid; its start date is in the future. Certificate '{name}' has START_DATE {}.",
                f(start)
            ),
        })
    } else {
        None
    }
}

/// The AAD ties an encrypted private key to its certificate's bytes.
fn pvk_aad(cert_der: &[u8]) -> String {
    format!("pvk/{}", crypto::hex_upper(&crypto::sha1(cert_der)))
}

fn to_key32(b: &[u8]) -> Result<Key32> {
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| TrustError::internal("stored key has the wrong length"))?;
    Ok(Zeroizing::new(arr))
}

fn write_new_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = o.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn load_or_create_instance_key(dir: &Path) -> Result<Key32> {
    let path = dir.join(INSTANCE_KEY_FILE);
    match fs::read(&path) {
        Ok(b) => to_key32(&Zeroizing::new(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            let k = crypto::random_key()?;
            match write_new_file(&path, &k[..], 0o600) {
                Ok(()) => Ok(k),
                // Another opener won the race: use its key.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    to_key32(&Zeroizing::new(fs::read(&path)?))
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
