//! Trust statements on the SQL endpoint: the master key, certificates (generated, FROM BINARY, FROM FILE, BACKUP,
//! DROP), sys.certificates / sys.symmetric_keys rows, CERT_ID / CERTENCODED, and the certificate procedures.
//! Storage and cryptography are the `trust` crate's; this module maps T-SQL onto it.

use crate::exec::{display, Conn, Out};
use std::path::PathBuf;
use tsql::admin::{find_opt, Admin, AlterMasterKey, CertSource};
use tsql::{SqlError, Value};

pub fn err(e: trust::TrustError) -> SqlError {
    let mut x = SqlError::new(e.number, e.severity, e.message);
    x.state = e.state;
    x
}

fn need_master(conn: &Conn, what: &str) -> Result<(), SqlError> {
    if conn.database() != "master" {
        return Err(SqlError::new(
            15581,
            16,
            format!("{what}: this server keeps the master key and certificates in master only. Run USE master first."),
        ));
    }
    Ok(())
}

fn text_of(conn: &mut Conn, e: &tsql::Expr) -> Result<String, SqlError> {
    Ok(display(&conn.eval(e)?))
}

fn date_of(
    conn: &mut Conn,
    e: &Option<tsql::Expr>,
) -> Result<Option<chrono::NaiveDateTime>, SqlError> {
    match e {
        None => Ok(None),
        Some(e) => {
            let s = text_of(conn, e)?;
            trust::parse_sql_date(&s).map(Some).map_err(err)
        }
    }
}

/// Runs a trust statement; returns false if `a` is not one.
pub fn run(conn: &mut Conn, a: &Admin, out: &mut Vec<Out>) -> Result<bool, SqlError> {
    let server = conn.server.clone();
    match a {
        Admin::CreateMasterKey { password } => {
            need_master(conn, "CREATE MASTER KEY")?;
            let pw = match password {
                Some(p) => text_of(conn, p)?,
                None => {
                    return Err(SqlError::new(
                        15151,
                        16,
                        "CREATE MASTER KEY needs ENCRYPTION BY PASSWORD.",
                    ))
                }
            };
            let t = server.trust()?;
            t.create_master_key(&server.inst.master(), &pw)
                .map_err(err)?;
        }
        Admin::OpenMasterKey { password } => {
            let pw = text_of(conn, password)?;
            let t = server.trust()?;
            t.open_master_key(&server.inst.master(), &pw).map_err(err)?;
        }
        Admin::CloseMasterKey => {}
        Admin::AlterMasterKey(alter) => {
            let t = server.trust()?;
            match alter {
                AlterMasterKey::Regenerate { password, .. } => {
                    let pw = text_of(conn, password)?;
                    t.regenerate_master_key(&server.inst.master(), &pw)
                        .map_err(err)?;
                }
                // The instance key always protects the master key here, like the service master key.
                AlterMasterKey::AddEncryptionByServiceMasterKey
                | AlterMasterKey::DropEncryptionByServiceMasterKey => {}
                AlterMasterKey::AddEncryptionByPassword(_)
                | AlterMasterKey::DropEncryptionByPassword(_) => {
                    return Err(SqlError::unsupported(
                        "ALTER MASTER KEY ADD/DROP ENCRYPTION BY PASSWORD (use REGENERATE)",
                        0,
                    ))
                }
            }
        }
        Admin::DropMasterKey => {
            need_master(conn, "DROP MASTER KEY")?;
            server
                .trust()?
                .drop_master_key(&server.inst.master())
                .map_err(err)?;
        }
        Admin::CreateCertificate(c) => {
            need_master(conn, "CREATE CERTIFICATE")?;
            if c.encryption_password.is_some() || !c.private_key.is_empty() {
                return Err(SqlError::unsupported("CREATE CERTIFICATE with a private key password or file (the master key protects generated keys)", 0));
            }
            let t = server.trust()?;
            let created = match &c.source {
                CertSource::Generate => {
                    let subject = match &c.subject {
                        Some(s) => text_of(conn, s)?,
                        None => {
                            return Err(SqlError::new(
                                15297,
                                16,
                                "The certificate subject must have 1 to 128 characters.",
                            ))
                        }
                    };
                    let start = date_of(conn, &c.start_date)?;
                    let expiry = date_of(conn, &c.expiry_date)?;
                    t.create_self_signed(
                        &server.inst.master(),
                        &c.name.value,
                        &subject,
                        start,
                        expiry,
                    )
                    .map_err(err)?
                }
                CertSource::Binary(e) => {
                    let bytes = match conn.eval(e)? {
                        Value::Binary(b) => b,
                        v => trust::parse_binary_literal(&display(&v)).map_err(err)?,
                    };
                    t.import_public(&server.inst.master(), &c.name.value, &bytes)
                        .map_err(err)?
                }
                CertSource::File(e) => {
                    let path = PathBuf::from(text_of(conn, e)?);
                    t.import_public_file(&server.inst.master(), &c.name.value, &path)
                        .map_err(err)?
                }
            };
            if let Some(w) = created.warning {
                out.push(Out::Info(w.number, w.message));
            }
        }
        Admin::BackupCertificate(b) => {
            need_master(conn, "BACKUP CERTIFICATE")?;
            let path = PathBuf::from(text_of(conn, &b.file)?);
            let key = match find_opt(&b.private_key, "FILE") {
                Some(f) => {
                    let file = match f.expr() {
                        Some(e) => text_of(conn, e)?,
                        None => f.word().unwrap_or_default(),
                    };
                    let pw =
                        match find_opt(&b.private_key, "ENCRYPTION BY PASSWORD") {
                            Some(p) => match p.expr() {
                                Some(e) => text_of(conn, e)?,
                                None => p.word().unwrap_or_default(),
                            },
                            None => return Err(SqlError::new(
                                15151,
                                16,
                                "BACKUP CERTIFICATE WITH PRIVATE KEY needs ENCRYPTION BY PASSWORD.",
                            )),
                        };
                    Some((PathBuf::from(file), pw))
                }
                None => None,
            };
            server
                .trust()?
                .backup(
                    &server.inst.master(),
                    &b.name.value,
                    &path,
                    key.as_ref().map(|(p, pw)| (p.as_path(), pw.as_str())),
                )
                .map_err(err)?;
        }
        Admin::DropCertificate { name } => {
            need_master(conn, "DROP CERTIFICATE")?;
            server
                .trust()?
                .drop_certificate(&server.inst.master(), &name.value)
                .map_err(err)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The certificate procedures; None if `name` is not one of them.
pub fn procedure(
    conn: &mut Conn,
    name: &str,
    args: &[(Option<String>, Value)],
    out: &mut Vec<Out>,
) -> Option<Result<i32, SqlError>> {
    let server = conn.server.clone();
    let arg = |pos: usize, n: &str| {
        args.iter()
            .find(|(a, _)| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(n)))
            .or_else(|| args.get(pos).filter(|(a, _)| a.is_none()))
            .map(|(_, v)| v.clone())
    };
    Some((|| -> Result<i32, SqlError> {
        match name {
            "sp_certificate_add_issuer" => {
                let id = arg(0, "@certid").and_then(|v| v.as_i64()).ok_or_else(|| SqlError::new(201, 16, "Procedure or function 'sp_certificate_add_issuer' expects parameter '@certid', which was not supplied."))?;
                let pattern = arg(1, "@issuer_name").map(|v| display(&v)).unwrap_or_default();
                server.trust()?.add_issuer(&server.inst.master(), id as i32, &pattern).map_err(err)?;
                Ok(0)
            }
            "sp_validate_certificate_ca_chain" => {
                let id = arg(0, "@certificate_id").and_then(|v| v.as_i64()).unwrap_or(0) as i32;
                let r = server.trust()?.validate_ca_chain(&server.inst.master(), id, trust::now_utc()).map_err(err)?;
                out.push(Out::Info(0, format!("The certificate chain of certificate {id} is valid: {}.", r.chain.join(" -> "))));
                Ok(0)
            }
            "sp_get_endpoint_certificate" => {
                let kind = arg(0, "@endpoint_type").and_then(|v| v.as_i64()).unwrap_or(4);
                if !server.managed {
                    return Err(SqlError::new(2812, 16, "Could not find stored procedure 'sp_get_endpoint_certificate'. (It exists on a managed instance: milink serve --managed.)"));
                }
                if kind != 4 && kind != 3 {
                    return Err(SqlError::new(8114, 16, format!("Invalid @endpoint_type {kind}: 4 = database mirroring, 3 = Service Broker.")));
                }
                let t = server.trust()?;
                let der = t.endpoint_certificate_public_key(&server.inst.master(), &server.host).map_err(err)?;
                // The issuer of the endpoint certificate, for peers that trust by issuer (sp_certificate_add_issuer)
                // and so keep working when the endpoint certificate rotates.
                let ca = t.instance_ca_certificate(&server.inst.master()).map_err(err)?;
                let vb = || tsql::DataType::VarBinary(tsql::types::Len::Max);
                out.push(Out::Columns(vec![("EndpointCertificatePublicKey".into(), vb()), ("IssuerCertificatePublicKey".into(), vb())]));
                out.push(Out::Row(vec![Value::Binary(der), ca.map(Value::Binary).unwrap_or(Value::Null)]));
                conn.out_done(out, Some(1));
                Ok(0)
            }
            _ => Err(SqlError::new(0, 0, "")),
        }
    })())
    .filter(|r| !matches!(r, Err(e) if e.number == 0))
}

/// CERT_ID(name) and CERTENCODED(id) for the evaluator and SQLite.
pub fn function(
    server: &crate::Server,
    name: &str,
    args: &[Value],
) -> Option<Result<Value, SqlError>> {
    match name {
        "CERT_ID" => Some((|| {
            let n = args.first().map(display).unwrap_or_default();
            let id = server
                .trust()?
                .cert_id(&server.inst.master(), &n)
                .map_err(err)?;
            Ok(id.map(Value::Int).unwrap_or(Value::Null))
        })()),
        "CERTENCODED" => Some((|| {
            let Some(id) = args.first().and_then(|v| v.as_i64()) else {
                return Ok(Value::Null);
            };
            let der = server
                .trust()?
                .cert_encoded(&server.inst.master(), id as i32)
                .map_err(err)?;
            Ok(der.map(Value::Binary).unwrap_or(Value::Null))
        })()),
        _ => None,
    }
}
