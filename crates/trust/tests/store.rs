use chrono::Duration;
use rusqlite::Connection;
use std::path::Path;
use trust::{codes, now_utc, parse_sql_date, PeerAccepted, PeerRefusal, TrustStore};

const PW: &str = "Str0ng!Passw0rd";

fn open(dir: &Path) -> (Connection, TrustStore) {
    let conn = Connection::open(dir.join("master.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    let store = TrustStore::open(&conn, dir).unwrap();
    (conn, store)
}

#[test]
fn master_key_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let (c, s) = open(dir.path());
    for weak in ["short1A", "alllowercase", "ALLUPPER123", "12345678"] {
        let e = s.create_master_key(&c, weak).unwrap_err();
        assert_eq!(e.number, 15118, "{weak}");
        assert_eq!(e.message, "Password validation failed. The password does not meet the operating system policy requirements because it is not complex enough.");
    }
    assert!(s.symmetric_keys(&c).unwrap().is_empty());
    let e = s
        .create_self_signed(&c, "c1", "subj", None, None)
        .unwrap_err();
    assert_eq!(e.number, 15581);
    assert_eq!(e.message, "Please create a master key in the database or open the master key in the session before performing this operation.");

    s.create_master_key(&c, PW).unwrap();
    assert_eq!(s.create_master_key(&c, PW).unwrap_err().number, 15578);
    let rows = s.symmetric_keys(&c).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "##MS_DatabaseMasterKey##");
    assert_eq!(rows[0].symmetric_key_id, 101);
    assert_eq!(rows[0].key_length, 256);
    assert_eq!(rows[0].algorithm_desc, "AES_256");
    assert_eq!(rows[0].key_guid.len(), 36);

    assert_eq!(
        s.open_master_key(&c, "Wr0ng!Password").unwrap_err().number,
        15313
    );
    s.open_master_key(&c, PW).unwrap();

    let created = s
        .create_self_signed(&c, "c1", "Certificate for c1", None, None)
        .unwrap();
    assert_eq!(created.certificate_id, 256);
    assert!(created.warning.is_none());
    let e = s.drop_master_key(&c).unwrap_err();
    assert_eq!(e.number, 15580);
    assert!(e.message.contains("'c1'"), "{}", e.message);

    // Regenerating re-encrypts private keys: the certificate still yields its key.
    let before = s.local_identity(&c, "c1", now_utc()).unwrap();
    s.regenerate_master_key(&c, "An0ther!Passw0rd").unwrap();
    assert_eq!(s.open_master_key(&c, PW).unwrap_err().number, 15313);
    s.open_master_key(&c, "An0ther!Passw0rd").unwrap();
    let after = s.local_identity(&c, "c1", now_utc()).unwrap();
    assert_eq!(&before.key_pkcs8[..], &after.key_pkcs8[..]);
    s.change_master_key_password(&c, "An0ther!Passw0rd", PW)
        .unwrap();
    s.open_master_key(&c, PW).unwrap();

    // A restart (new TrustStore over the same files) needs no password.
    drop(s);
    let s2 = TrustStore::open(&c, dir.path()).unwrap();
    let again = s2.local_identity(&c, "c1", now_utc()).unwrap();
    assert_eq!(&again.key_pkcs8[..], &before.key_pkcs8[..]);

    s2.drop_certificate(&c, "c1").unwrap();
    s2.drop_master_key(&c).unwrap();
    assert!(s2.symmetric_keys(&c).unwrap().is_empty());
    assert_eq!(s2.drop_master_key(&c).unwrap_err().number, 15151);
}

#[test]
fn seed_certificate_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (c, s) = open(dir.path());
    s.create_master_key(&c, PW).unwrap();
    let name = "Cert_sqlserver1_endpoint";
    let subject = "Certificate for Cert_sqlserver1_endpoint";
    // The seed's EXPIRY_DATE = '03/30/2025' is past: created, with a warning naming it.
    let created = s
        .create_self_signed(
            &c,
            name,
            subject,
            None,
            Some(parse_sql_date("03/30/2025").unwrap()),
        )
        .unwrap_err_or_created();
    let w = created.warning.expect("warning for past expiry");
    assert_eq!(w.number, 15214);
    assert!(w
        .message
        .starts_with("Warning: The certificate you created is expired."));
    assert!(
        w.message.contains(name) && w.message.contains("2025-03-30"),
        "{w:?}"
    );

    // A valid one for the rest.
    let good = s
        .create_self_signed(
            &c,
            "good",
            "Certificate for good",
            Some(parse_sql_date("01/01/2026").unwrap()),
            Some(now_utc() + Duration::days(365)),
        )
        .unwrap();
    assert!(good.warning.is_none());
    assert_eq!(s.cert_id(&c, name).unwrap(), Some(created.certificate_id));
    assert_eq!(s.cert_id(&c, "nope").unwrap(), None);

    let rows = s.certificates(&c).unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.name, name);
    assert_eq!(r.certificate_id, 256);
    assert_eq!(r.pvt_key_encryption_type, "MK");
    assert_eq!(r.pvt_key_encryption_type_desc, "ENCRYPTED_BY_MASTER_KEY");
    assert_eq!(r.subject, subject);
    assert_eq!(r.issuer_name, subject);
    assert_eq!(r.key_length, 2048);
    assert_eq!(r.expiry_date.to_string(), "2025-03-30 00:00:00");
    assert_eq!(r.thumbprint.len(), 20);
    assert_eq!(r.cert_serial_number.split(' ').count(), 16);
    assert!(r.string_sid.starts_with("S-1-9-1-"));
    assert_eq!(rows[1].start_date.to_string(), "2026-01-01 00:00:00");

    // CERTENCODED(CERT_ID(name)) -> bytes, which import on the other side FROM BINARY.
    let der = s.cert_encoded(&c, r.certificate_id).unwrap().unwrap();
    assert_eq!(trust::crypto::sha1(&der), r.thumbprint);

    let dir2 = tempfile::tempdir().unwrap();
    let (c2, s2) = open(dir2.path());
    let imp = s2
        .import_public(&c2, "sqlserver1.domain.com", &der)
        .unwrap();
    assert!(imp.warning.is_some(), "imported expired cert warns");
    let rows2 = s2.certificates(&c2).unwrap();
    assert_eq!(rows2[0].pvt_key_encryption_type, "NA");
    assert_eq!(rows2[0].pvt_key_encryption_type_desc, "NO_PRIVATE_KEY");
    assert_eq!(rows2[0].thumbprint, r.thumbprint);
    assert_eq!(
        s2.import_public(&c2, "SQLSERVER1.domain.com", &der)
            .unwrap_err()
            .number,
        15232
    );

    // Using the expired certificate for a connection is refused, naming it and its expiry.
    let e = s.local_identity(&c, name, now_utc()).unwrap_err();
    assert!(
        e.message.contains(name) && e.message.contains("2025-03-30"),
        "{}",
        e.message
    );
}

trait CreatedExt {
    fn unwrap_err_or_created(self) -> trust::CreatedCertificate;
}
impl CreatedExt for trust::Result<trust::CreatedCertificate> {
    fn unwrap_err_or_created(self) -> trust::CreatedCertificate {
        self.unwrap()
    }
}

#[test]
fn malformed_imports_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (c, s) = open(dir.path());
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x30, 0x82, 0x01],
        b"not a certificate".to_vec(),
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
    ];
    for b in &bad {
        let e = s.import_public(&c, "x", b).unwrap_err();
        assert_eq!(e.number, codes::CERT_INVALID, "{e}");
        assert!(e.message.contains("not valid"), "{}", e.message);
    }
    let e = s
        .import_public_file(&c, "x", &dir.path().join("missing.cer"))
        .unwrap_err();
    assert_eq!(e.number, codes::CERT_INVALID);
    assert!(s.certificates(&c).unwrap().is_empty());

    // PEM and DER files both import.
    s.create_master_key(&c, PW).unwrap();
    s.create_self_signed(&c, "src", "src subject", None, None)
        .unwrap();
    let der = s.cert_encoded(&c, 256).unwrap().unwrap();
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()));
    std::fs::write(dir.path().join("a.pem"), pem).unwrap();
    std::fs::write(dir.path().join("a.cer"), &der).unwrap();
    s.import_public_file(&c, "from_pem", &dir.path().join("a.pem"))
        .unwrap();
    s.import_public_file(&c, "from_der", &dir.path().join("a.cer"))
        .unwrap();
    let ids: Vec<i32> = s
        .certificates(&c)
        .unwrap()
        .iter()
        .map(|r| r.certificate_id)
        .collect();
    assert_eq!(ids, vec![256, 257, 258]);
}

#[test]
fn backup_and_drop_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (c, s) = open(dir.path());
    s.create_master_key(&c, PW).unwrap();
    s.create_self_signed(&c, "ep", "endpoint cert", None, None)
        .unwrap();
    let cer = out.path().join("ep.cer");
    let pvk = out.path().join("ep.pvk");
    assert_eq!(
        s.backup(&c, "ep", &cer, Some((&pvk, "weak")))
            .unwrap_err()
            .number,
        15118
    );
    s.backup(&c, "ep", &cer, Some((&pvk, PW))).unwrap();
    assert_eq!(
        std::fs::read(&cer).unwrap(),
        s.cert_encoded(&c, 256).unwrap().unwrap()
    );
    assert!(s.certificates(&c).unwrap()[0]
        .pvt_key_last_backup_date
        .is_some());
    // Existing files are not overwritten.
    assert_eq!(
        s.backup(&c, "ep", &cer, None).unwrap_err().number,
        codes::FILE_WRITE
    );
    // The key file is encrypted: it does not contain the PKCS#8 bytes.
    let id = s.local_identity(&c, "ep", now_utc()).unwrap();
    let blob = std::fs::read(&pvk).unwrap();
    assert!(blob.starts_with(b"MILINK-PVK1"));
    assert!(!contains(&blob, &id.key_pkcs8[..64]));

    s.set_endpoint_certificate(&c, "database_mirroring_endpoint", Some("ep"))
        .unwrap();
    let e = s.drop_certificate(&c, "ep").unwrap_err();
    assert_eq!(e.number, codes::CERT_IN_USE);
    assert!(
        e.message.contains("database_mirroring_endpoint"),
        "{}",
        e.message
    );
    s.set_endpoint_certificate(&c, "database_mirroring_endpoint", None)
        .unwrap();
    s.drop_certificate(&c, "ep").unwrap();
    assert_eq!(s.drop_certificate(&c, "ep").unwrap_err().number, 15151);
    // With no certificate left the next id is the first one again.
    let again = s.create_self_signed(&c, "ep2", "x", None, None).unwrap();
    assert_eq!(again.certificate_id, 256);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_plaintext_private_key_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (c, s) = open(dir.path());
    s.create_master_key(&c, PW).unwrap();
    s.create_self_signed(&c, "a", "a subject", None, None)
        .unwrap();
    s.create_self_signed(&c, "b", "b subject", None, None)
        .unwrap();
    s.ensure_instance_ca(&c, "milink test CA").unwrap();
    s.issue_endpoint_certificate(
        &c,
        "mi1.example",
        now_utc() - Duration::hours(1),
        now_utc() + Duration::days(1),
    )
    .unwrap();
    s.regenerate_master_key(&c, "An0ther!Passw0rd").unwrap();

    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for n in ["a", "b"] {
        secrets.push(
            s.local_identity(&c, n, now_utc())
                .unwrap()
                .key_pkcs8
                .to_vec(),
        );
    }
    secrets.push(
        s.instance_endpoint_identity(&c, "mi1.example", now_utc())
            .unwrap()
            .key_pkcs8
            .to_vec(),
    );
    // Keep the WAL un-checkpointed so its contents are searched too.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for k in &secrets {
        needles.push(k.clone());
        // A window from inside the key (catches partial copies and other encodings of the same integers).
        needles.push(k[k.len() / 2..k.len() / 2 + 32].to_vec());
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", k.clone()));
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        needles.push(body.as_bytes()[..64].to_vec());
        needles.push(pem.lines().nth(1).unwrap().as_bytes().to_vec());
    }
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        files += 1;
        for n in &needles {
            assert!(
                !contains(&data, n),
                "private key material found in {}",
                p.display()
            );
        }
    }
    assert!(
        files >= 3,
        "master.db, its -wal and the instance key were searched"
    );
    assert!(dir.path().join("master.db-wal").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(trust::store::INSTANCE_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn issuer_trust_and_chain_validation() {
    let mi = tempfile::tempdir().unwrap();
    let sql = tempfile::tempdir().unwrap();
    let (mc, ms) = open(mi.path());
    let (sc, ss) = open(sql.path());
    let ca = ms.ensure_instance_ca(&mc, "milink MI CA").unwrap();
    assert_eq!(
        ms.ensure_instance_ca(&mc, "ignored").unwrap(),
        ca,
        "idempotent"
    );
    let fqdn = "mi1.6d710bcf372b.database.windows.net";
    let now = now_utc();
    let a = ms
        .issue_endpoint_certificate(&mc, fqdn, now - Duration::days(1), now + Duration::hours(1))
        .unwrap();
    assert_eq!(ms.endpoint_certificate_public_key(&mc, fqdn).unwrap(), a);

    let root = ss
        .import_public(&sc, "mi_root", &ca)
        .unwrap()
        .certificate_id;
    // Not a CA -> cannot be an issuer.
    let leaf_id = ss
        .import_public(&sc, "leaf_copy", &a)
        .unwrap()
        .certificate_id;
    assert_eq!(
        ss.add_issuer(&sc, leaf_id, "*.database.windows.net")
            .unwrap_err()
            .number,
        codes::CA_CHAIN
    );
    assert_eq!(
        ss.add_issuer(&sc, root, "*.bad*pattern")
            .unwrap_err()
            .number,
        codes::CA_CHAIN
    );
    ss.add_issuer(&sc, root, "*.database.windows.net").unwrap();
    assert_eq!(
        ss.issuers(&sc).unwrap(),
        vec![(root, "*.database.windows.net".to_string())]
    );
    assert_eq!(
        ss.validate_ca_chain(&sc, root, now).unwrap().chain,
        vec!["mi_root"]
    );
    assert_eq!(
        ss.validate_ca_chain(&sc, leaf_id, now).unwrap().chain,
        vec!["leaf_copy", "mi_root"]
    );

    let pt = ss.peer_trust(&sc, fqdn).unwrap();
    assert_eq!(pt.issuers.len(), 1);
    assert!(matches!(
        pt.verify(&a, now),
        Ok(PeerAccepted::ByIssuer { .. })
    ));
    // Rotation: due within 2h -> a new certificate; both verify during the overlap.
    let b = ms
        .rotate_endpoint_certificate(&mc, fqdn, now, Duration::days(30), Duration::hours(2))
        .unwrap()
        .unwrap();
    assert!(ms
        .rotate_endpoint_certificate(&mc, fqdn, now, Duration::days(30), Duration::hours(2))
        .unwrap()
        .is_none());
    assert_eq!(ms.endpoint_certificate_public_key(&mc, fqdn).unwrap(), b);
    assert!(pt.verify(&b, now).is_ok());
    assert!(pt.verify(&a, now).is_ok());
    // After A's expiry only B is accepted.
    let later = now + Duration::hours(2);
    assert!(matches!(
        pt.verify(&a, later),
        Err((PeerRefusal::Expired { .. }, _))
    ));
    assert!(pt.verify(&b, later).is_ok());
    // Bound to the name: the same issuer's certificate for mi1 cannot act as mi2.
    let pt2 = ss
        .peer_trust(&sc, "mi2.6d710bcf372b.database.windows.net")
        .unwrap();
    assert!(matches!(
        pt2.verify(&b, now),
        Err((PeerRefusal::NameMismatch, _))
    ));
    // A name outside every pattern has no trust at all.
    let pt3 = ss.peer_trust(&sc, "other.example.com").unwrap();
    assert!(matches!(
        pt3.verify(&b, now),
        Err((PeerRefusal::NotImported, _))
    ));

    // A foreign CA's certificate is not accepted by issuer.
    let other = tempfile::tempdir().unwrap();
    let (oc, os) = open(other.path());
    os.ensure_instance_ca(&oc, "evil CA").unwrap();
    let evil = os
        .issue_endpoint_certificate(&oc, fqdn, now - Duration::hours(1), now + Duration::days(1))
        .unwrap();
    assert!(matches!(
        pt.verify(&evil, now),
        Err((PeerRefusal::UntrustedIssuer { .. }, _))
    ));

    // A chain whose root is missing fails validation with a message naming the issuer.
    let (tc, ts) = open(tempfile::tempdir().unwrap().path());
    let lone = ts.import_public(&tc, "lone", &a).unwrap().certificate_id;
    let e = ts.validate_ca_chain(&tc, lone, now).unwrap_err();
    assert!(e.message.contains("milink MI CA"), "{}", e.message);
}

#[test]
fn lost_instance_key_needs_the_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let (c, s) = open(dir.path());
    s.create_master_key(&c, PW).unwrap();
    s.create_self_signed(&c, "a", "a subject", None, None)
        .unwrap();
    drop(s);
    // The data directory comes back without its key file (e.g. restored from a copy of master.db).
    std::fs::remove_file(dir.path().join(trust::store::INSTANCE_KEY_FILE)).unwrap();
    let s = TrustStore::open(&c, dir.path()).unwrap();
    let e = s.local_identity(&c, "a", now_utc()).unwrap_err();
    assert_eq!(e.number, 15581, "{e}");
    assert_eq!(
        s.open_master_key(&c, "Wr0ng!Password").unwrap_err().number,
        15313
    );
    s.open_master_key(&c, PW).unwrap();
    s.local_identity(&c, "a", now_utc()).unwrap();
    // And the next restart needs no password again.
    let s = TrustStore::open(&c, dir.path()).unwrap();
    s.local_identity(&c, "a", now_utc()).unwrap();
}

#[test]
fn future_start_date_warns() {
    let dir = tempfile::tempdir().unwrap();
    let (c, s) = open(dir.path());
    s.create_master_key(&c, PW).unwrap();
    let created = s
        .create_self_signed(
            &c,
            "f",
            "future",
            Some(now_utc() + Duration::days(2)),
            Some(now_utc() + Duration::days(30)),
        )
        .unwrap();
    assert_eq!(created.warning.unwrap().number, 15215);
    let e = s
        .create_self_signed(
            &c,
            "g",
            "bad",
            Some(parse_sql_date("2030-01-01").unwrap()),
            Some(parse_sql_date("2029-01-01").unwrap()),
        )
        .unwrap_err();
    assert_eq!(e.number, 241);
}

/// Deterministic mutations of real certificates through every certificate decoder and the
/// peer verdict (the peer's certificate is network input).
#[test]
fn certificate_decoders_survive_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let (c, s) = open(dir.path());
    let ca = s.ensure_instance_ca(&c, "fuzz CA").unwrap();
    let leaf = s
        .issue_endpoint_certificate(
            &c,
            "mi.example",
            now_utc() - Duration::hours(1),
            now_utc() + Duration::days(1),
        )
        .unwrap();
    s.import_public(&c, "mi.example", &leaf).unwrap();
    let root = s.import_public(&c, "root", &ca).unwrap().certificate_id;
    s.add_issuer(&c, root, "*.example").unwrap();
    let pt = s.peer_trust(&c, "mi.example").unwrap();
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", leaf.clone())).into_bytes();
    let seeds = [leaf.clone(), ca.clone(), pem];
    let mut x: u64 = 0x243F_6A88_85A3_08D3;
    let mut next = || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for i in 0..3000 {
        let mut v = seeds[i % seeds.len()].clone();
        for _ in 0..1 + next() % 4 {
            let r = next();
            let pos = (r >> 8) as usize % v.len().max(1);
            match r % 5 {
                0 if !v.is_empty() => v[pos] ^= 1 << ((r >> 40) % 8),
                1 if !v.is_empty() => v[pos] = (r >> 48) as u8,
                2 => v.truncate(pos),
                3 if !v.is_empty() => {
                    v.remove(pos);
                }
                _ => v.insert(pos.min(v.len()), (r >> 32) as u8),
            }
        }
        trust::certinfo::fuzz::certificate(&v);
        trust::certinfo::fuzz::signed(&v, &ca);
        if let Ok(PeerAccepted::Pinned { .. }) | Ok(PeerAccepted::ByIssuer { .. }) =
            pt.verify(&v, now_utc())
        {
            // A mutation can only be accepted if it is byte-identical to the original or still
            // carries a valid signature from the CA (e.g. a change in the unsigned outer bytes
            // that the DER parser tolerates is impossible: the whole DER is compared or signed).
            assert!(v == leaf || trust::certinfo::signed_by(&v, &ca));
        }
    }
}

#[test]
fn managed_identity_and_hex_blobs() {
    let mi = tempfile::tempdir().unwrap();
    let (c, s) = open(mi.path());
    let now = now_utc();
    let a = s
        .ensure_managed_identity(
            &c,
            "mi.example",
            now,
            Duration::days(90),
            Duration::days(30),
        )
        .unwrap();
    // Idempotent until renewal is due, then a new one.
    assert_eq!(
        s.ensure_managed_identity(
            &c,
            "mi.example",
            now,
            Duration::days(90),
            Duration::days(30)
        )
        .unwrap(),
        a
    );
    let later = now + Duration::days(61);
    let b = s
        .ensure_managed_identity(
            &c,
            "mi.example",
            later,
            Duration::days(90),
            Duration::days(30),
        )
        .unwrap();
    assert_ne!(a, b);
    // EndpointCertificatePublicKey as 0x… text, imported on the other side from that text.
    let text = trust::to_binary_literal(&a);
    assert!(text.starts_with("0x"));
    let sql = tempfile::tempdir().unwrap();
    let (sc, ss) = open(sql.path());
    ss.import_public_hex(&sc, "mi.example", &text).unwrap();
    for bad in ["", "0x", "0x123", "0xZZ", "1234", &text[..text.len() - 2]] {
        let e = ss.import_public_hex(&sc, "x", bad).unwrap_err();
        assert_eq!(e.number, codes::CERT_INVALID, "{bad}: {e}");
    }
    assert_eq!(ss.certificates(&sc).unwrap().len(), 1);
}
