//! Parsing and checking X.509 certificates (x509-parser; signatures verified with ring).

use crate::crypto::{hex_upper, sha1};
use crate::error::{codes, Result, TrustError};
use chrono::{DateTime, NaiveDateTime, Utc};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// What sys.certificates and the transport need from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's CN (what SQL Server shows), else the whole DN.
    pub subject: String,
    pub issuer_name: String,
    /// Lower-case hex bytes separated by spaces, as sys.certificates shows it.
    pub cert_serial_number: String,
    /// SHA-1 of the DER encoding.
    pub thumbprint: Vec<u8>,
    pub start_date: NaiveDateTime,
    pub expiry_date: NaiveDateTime,
    pub key_length: i32,
    pub is_ca: bool,
    pub self_issued: bool,
    /// CN values plus DNS subject alternative names: the names the certificate speaks for.
    pub names: Vec<String>,
}

impl CertInfo {
    pub fn thumbprint_hex(&self) -> String {
        format!("0x{}", hex_upper(&self.thumbprint))
    }

    pub fn is_expired_at(&self, now: NaiveDateTime) -> bool {
        now > self.expiry_date
    }

    pub fn is_valid_at(&self, now: NaiveDateTime) -> bool {
        now >= self.start_date && now <= self.expiry_date
    }

    /// Whether the certificate names `peer` (case-insensitive; wildcards allowed in the certificate).
    pub fn names_peer(&self, peer: &str) -> bool {
        self.names.iter().any(|n| name_matches(n, peer))
    }
}

fn invalid(detail: impl std::fmt::Display) -> TrustError {
    TrustError::new(
        codes::CERT_INVALID,
        format!(
            "The certificate, asymmetric key, or private key file is not valid or does not exist; or you do not have permissions for it. ({detail})"
        ),
    )
}

fn ts(t: &x509_parser::time::ASN1Time) -> NaiveDateTime {
    DateTime::<Utc>::from_timestamp(t.timestamp(), 0)
        .unwrap_or_default()
        .naive_utc()
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>> {
    match X509Certificate::from_der(der) {
        Ok(([], c)) => Ok(c),
        Ok(_) => Err(invalid("trailing bytes after the certificate")),
        Err(e) => Err(invalid(format!("not a DER X.509 certificate: {e}"))),
    }
}

fn cn_or_dn(name: &x509_parser::x509::X509Name<'_>) -> String {
    let cns: Vec<String> = name
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    if cns.is_empty() {
        name.to_string()
    } else {
        cns.join(", ")
    }
}

pub fn parse_cert(der: &[u8]) -> Result<CertInfo> {
    let c = parse(der)?;
    let key_length = c
        .public_key()
        .parsed()
        .map(|k| k.key_size() as i32)
        .unwrap_or(0);
    let mut names: Vec<String> = c
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    let mut is_ca = false;
    for ext in c.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for g in &san.general_names {
                    if let GeneralName::DNSName(d) = g {
                        names.push((*d).to_string());
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            _ => {}
        }
    }
    let serial = c.tbs_certificate.raw_serial();
    Ok(CertInfo {
        subject: cn_or_dn(c.subject()),
        issuer_name: cn_or_dn(c.issuer()),
        cert_serial_number: serial
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
        thumbprint: sha1(der),
        start_date: ts(&c.validity().not_before),
        expiry_date: ts(&c.validity().not_after),
        key_length,
        is_ca,
        self_issued: c.subject().as_raw() == c.issuer().as_raw(),
        names,
    })
}

/// Accepts DER, or PEM ("-----BEGIN CERTIFICATE-----"), and returns validated DER.
pub fn decode_cert_input(bytes: &[u8]) -> Result<Vec<u8>> {
    let trimmed = bytes.trim_ascii_start();
    let der = if trimmed.starts_with(b"-----BEGIN") {
        let p = pem::parse(trimmed).map_err(|e| invalid(format!("malformed PEM: {e}")))?;
        if p.tag() != "CERTIFICATE" {
            return Err(invalid(format!(
                "PEM block is '{}', expected 'CERTIFICATE'",
                p.tag()
            )));
        }
        p.into_contents()
    } else {
        bytes.to_vec()
    };
    if der.is_empty() {
        return Err(invalid("empty input"));
    }
    parse(&der)?;
    Ok(der)
}

/// True when `issuer_der`'s subject is `child_der`'s issuer and its key verifies the signature.
pub fn signed_by(child_der: &[u8], issuer_der: &[u8]) -> bool {
    let (Ok(child), Ok(issuer)) = (parse(child_der), parse(issuer_der)) else {
        return false;
    };
    child.issuer().as_raw() == issuer.subject().as_raw()
        && child.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Case-insensitive match of a name against a pattern: exact, or `*.suffix` matching one or more
/// leading labels (`*.database.windows.net` matches `mi1.6d71.database.windows.net`).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let p = pattern.trim().to_ascii_lowercase();
    let n = name.trim().to_ascii_lowercase();
    if p.is_empty() || n.is_empty() {
        return false;
    }
    if p == "*" {
        return true;
    }
    match p.strip_prefix("*.") {
        Some(suffix) => n.len() > suffix.len() + 1 && n.ends_with(&format!(".{suffix}")),
        None => p == n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(name_matches(
            "*.database.windows.net",
            "mi1.abc.database.windows.net"
        ));
        assert!(name_matches(
            "*.database.windows.net",
            "MI1.database.windows.net"
        ));
        assert!(!name_matches(
            "*.database.windows.net",
            "database.windows.net"
        ));
        assert!(!name_matches("*.database.windows.net", "evil.windows.net"));
        assert!(name_matches("host.example", "HOST.example"));
        assert!(!name_matches("", "x"));
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            &b""[..],
            b"\x30\x03\x02\x01",
            b"hello",
            b"-----BEGIN CERTIFICATE-----\nzz\n-----END CERTIFICATE-----\n",
        ] {
            let e = decode_cert_input(bad).unwrap_err();
            assert_eq!(e.number, codes::CERT_INVALID);
        }
    }
}

/// Fuzz entry points for certificate bytes, which arrive from the network (TLS peers) and from
/// users (FROM BINARY / FROM FILE). They must never panic.
pub mod fuzz {
    use super::*;

    pub fn certificate(data: &[u8]) {
        if let Ok(der) = decode_cert_input(data) {
            let _ = parse_cert(&der);
        }
        let _ = parse_cert(data);
    }

    /// `issuer` is a real CA certificate: exercises signature verification paths too.
    pub fn signed(data: &[u8], issuer: &[u8]) {
        let _ = signed_by(data, issuer);
        let _ = signed_by(issuer, data);
    }
}
