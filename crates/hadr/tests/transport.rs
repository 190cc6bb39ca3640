//! Transport tests between two instances (two trust stores in two temp data dirs) on loopback.

use chrono::{Duration, NaiveDateTime};
use hadr::transport::*;
use rusqlite::Connection;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trust::{
    now_utc, parse_sql_date, LocalIdentity, PeerAccepted, PeerTrust, TrustError, TrustStore,
};

const SQL: &str = "sqlserver1.domain.com";
const MI: &str = "mi1.6d710bcf372b.database.windows.net";
const SQL_CERT: &str = "Cert_sqlserver1_endpoint";
const PW: &str = "Str0ng!Passw0rd";

struct Side {
    _dir: tempfile::TempDir,
    db: PathBuf,
    store: Arc<TrustStore>,
}

impl Side {
    fn new() -> Side {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("master.db");
        let c = Connection::open(&db).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        let store = Arc::new(TrustStore::open(&c, dir.path()).unwrap());
        Side {
            _dir: dir,
            db,
            store,
        }
    }
    fn c(&self) -> Connection {
        Connection::open(&self.db).unwrap()
    }
    fn trust(&self, identity: IdentitySource) -> Arc<dyn TrustSource> {
        Arc::new(StoreTrust {
            db_path: self.db.clone(),
            store: self.store.clone(),
            identity,
        })
    }
}

/// SQL Server with its certificate, the MI with its CA and endpoint certificate.
struct Pair {
    sql: Side,
    mi: Side,
}

fn pair(exchange: bool) -> Pair {
    let sql = Side::new();
    let mi = Side::new();
    let (sc, mc) = (sql.c(), mi.c());
    sql.store.create_master_key(&sc, PW).unwrap();
    sql.store
        .create_self_signed(
            &sc,
            SQL_CERT,
            "Certificate for Cert_sqlserver1_endpoint",
            None,
            Some(now_utc() + Duration::days(365)),
        )
        .unwrap();
    mi.store
        .ensure_instance_ca(&mc, "milink managed instance CA")
        .unwrap();
    mi.store
        .issue_endpoint_certificate(
            &mc,
            MI,
            now_utc() - Duration::hours(1),
            now_utc() + Duration::days(30),
        )
        .unwrap();
    if exchange {
        import_sql_on_mi(&sql, &mi);
        import_mi_on_sql(&sql, &mi);
    }
    Pair { sql, mi }
}

fn import_sql_on_mi(sql: &Side, mi: &Side) {
    let sc = sql.c();
    let id = sql.store.cert_id(&sc, SQL_CERT).unwrap().unwrap();
    let der = sql.store.cert_encoded(&sc, id).unwrap().unwrap();
    mi.store.import_public(&mi.c(), SQL, &der).unwrap();
}

fn import_mi_on_sql(sql: &Side, mi: &Side) {
    // sp_get_endpoint_certificate @endpoint_type = 4 → CREATE CERTIFICATE [<MI FQDN>] FROM BINARY.
    let der = mi
        .store
        .endpoint_certificate_public_key(&mi.c(), MI)
        .unwrap();
    sql.store.import_public(&sql.c(), MI, &der).unwrap();
}

impl Pair {
    fn sql_settings(&self) -> EndpointSettings {
        EndpointSettings::new(
            SQL,
            Role::SqlServer,
            self.sql.trust(IdentitySource::Certificate(SQL_CERT.into())),
        )
    }
    fn mi_settings(&self) -> EndpointSettings {
        EndpointSettings::new(
            MI,
            Role::ManagedInstance,
            self.mi
                .trust(IdentitySource::InstanceEndpoint { fqdn: MI.into() }),
        )
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn wait_err(log: &ConnectErrorLog) -> ConnectError {
    for _ in 0..200 {
        if let Some(e) = log.last() {
            eprintln!("server: {e}");
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no error recorded");
}

/// A client whose connect attempt must fail; the error is printed for the test log.
async fn refused(s: &EndpointSettings, peer: &str, addr: SocketAddr) -> ConnectError {
    let e = connect(s, &ConnectErrorLog::default(), peer, addr)
        .await
        .unwrap_err();
    eprintln!("client: {e}");
    e
}

/// Trust that presents `id` instead of the store's own identity, on the real clock.
fn presenting(id: LocalIdentity, inner: Arc<dyn TrustSource>) -> Arc<dyn TrustSource> {
    Arc::new(Fixed {
        id,
        inner,
        now: None,
    })
}

/// Presents a fixed identity (e.g. an expired certificate) and optionally a fixed clock.
struct Fixed {
    id: LocalIdentity,
    inner: Arc<dyn TrustSource>,
    now: Option<NaiveDateTime>,
}

impl TrustSource for Fixed {
    fn local_identity(&self) -> Result<LocalIdentity, TrustError> {
        Ok(self.id.clone())
    }
    fn peer_trust(&self, p: &str) -> Result<PeerTrust, TrustError> {
        self.inner.peer_trust(p)
    }
    fn now(&self) -> NaiveDateTime {
        self.now.unwrap_or_else(now_utc)
    }
}

#[tokio::test]
async fn accepted_with_exchanged_certificates_both_directions() {
    let p = pair(true);
    // SQL Server connects to the MI's endpoint.
    let mi_log = ConnectErrorLog::default();
    let mut ep = Endpoint::start(loopback(), p.mi_settings(), mi_log.clone())
        .await
        .unwrap();
    let sql_log = ConnectErrorLog::default();
    let mut c = connect(&p.sql_settings(), &sql_log, MI, ep.local_addr())
        .await
        .unwrap();
    let mut s = ep.accept().await.unwrap();
    assert_eq!(c.version, 1);
    assert_eq!(s.version, 1);
    assert_eq!(s.peer_name, SQL);
    assert!(matches!(&c.accepted_by, PeerAccepted::Pinned { cert_name } if cert_name == MI));
    assert!(matches!(&s.accepted_by, PeerAccepted::Pinned { cert_name } if cert_name == SQL));
    assert!(matches!(
        c.cipher_suite,
        Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
            | Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    ));

    c.send(&Message::new(MessageKind::Data, b"log block 1".to_vec()))
        .await
        .unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    c.send(&Message::compressed(MessageKind::Data, &big, 1).unwrap())
        .await
        .unwrap();
    let m1 = s.recv().await.unwrap();
    assert_eq!(m1.payload, b"log block 1");
    let m2 = s.recv().await.unwrap();
    assert_eq!(m2.plain_payload().unwrap().as_ref(), &big[..]);
    s.send(&Message::new(MessageKind::Pong, vec![]))
        .await
        .unwrap();
    assert_eq!(c.recv().await.unwrap().kind, MessageKind::Pong);
    assert!(mi_log.last().is_none() && sql_log.last().is_none());

    // The MI connects to SQL Server's endpoint.
    let mut ep2 = Endpoint::start(loopback(), p.sql_settings(), ConnectErrorLog::default())
        .await
        .unwrap();
    let c2 = connect(
        &p.mi_settings(),
        &ConnectErrorLog::default(),
        SQL,
        ep2.local_addr(),
    )
    .await
    .unwrap();
    let s2 = ep2.accept().await.unwrap();
    assert_eq!(s2.peer_name, MI);
    assert_eq!(
        c2.peer_certificate.subject,
        "Certificate for Cert_sqlserver1_endpoint"
    );
}

#[tokio::test]
async fn rotation_of_mi_certificate_with_trusted_issuer() {
    let p = pair(false);
    import_sql_on_mi(&p.sql, &p.mi);
    // SQL Server trusts the MI's CA for *.database.windows.net instead of pinning.
    let (sc, mc) = (p.sql.c(), p.mi.c());
    let ca = p.mi.store.instance_ca_certificate(&mc).unwrap().unwrap();
    let root = p
        .sql
        .store
        .import_public(&sc, "mi_root", &ca)
        .unwrap()
        .certificate_id;
    p.sql
        .store
        .add_issuer(&sc, root, "*.database.windows.net")
        .unwrap();
    p.sql.store.validate_ca_chain(&sc, root, now_utc()).unwrap();
    // And pins the first certificate in a second store, to show pinning alone breaks.
    let first = p.mi.store.endpoint_certificate_public_key(&mc, MI).unwrap();

    let mut ep = Endpoint::start(loopback(), p.mi_settings(), ConnectErrorLog::default())
        .await
        .unwrap();
    let log = ConnectErrorLog::default();
    let mut before = connect(&p.sql_settings(), &log, MI, ep.local_addr())
        .await
        .unwrap();
    let mut before_srv = ep.accept().await.unwrap();
    assert!(matches!(before.accepted_by, PeerAccepted::ByIssuer { .. }));
    assert_eq!(
        before.peer_certificate.thumbprint,
        trust::crypto::sha1(&first)
    );

    // Rotate: renew when within 60 days of expiry (the first one has 30) → a new certificate now.
    let next =
        p.mi.store
            .rotate_endpoint_certificate(&mc, MI, now_utc(), Duration::days(90), Duration::days(60))
            .unwrap()
            .expect("rotation due");
    assert_ne!(next, first);
    let mut after = connect(&p.sql_settings(), &log, MI, ep.local_addr())
        .await
        .unwrap();
    let _after_srv = ep.accept().await.unwrap();
    assert_eq!(
        after.peer_certificate.thumbprint,
        trust::crypto::sha1(&next)
    );
    assert!(
        matches!(after.accepted_by, PeerAccepted::ByIssuer { ref pattern, .. } if pattern == "*.database.windows.net")
    );
    // The connection made before the rotation keeps working (overlap, no downtime).
    before
        .send(&Message::new(MessageKind::Data, b"still up".to_vec()))
        .await
        .unwrap();
    assert_eq!(before_srv.recv().await.unwrap().payload, b"still up");
    after
        .send(&Message::new(MessageKind::Ping, vec![]))
        .await
        .unwrap();
    assert!(log.last().is_none());

    // A peer that only pinned the first certificate refuses the rotated one, naming both.
    let pinned_only = Side::new();
    pinned_only
        .store
        .create_master_key(&pinned_only.c(), PW)
        .unwrap();
    // Reuse SQL's identity (so the MI accepts it) but pinned_only's trust: MI imported under its old name.
    pinned_only
        .store
        .import_public(&pinned_only.c(), MI, &first)
        .unwrap();
    let id = p
        .sql
        .store
        .local_identity(&sc, SQL_CERT, now_utc())
        .unwrap();
    let s = EndpointSettings::new(
        SQL,
        Role::SqlServer,
        presenting(
            id,
            pinned_only.trust(IdentitySource::Certificate(SQL_CERT.into())),
        ),
    );
    let e = refused(&s, MI, ep.local_addr()).await;
    assert_eq!(e.number, 41974, "{e}");
    assert!(
        e.message.contains("is not the certificate")
            && e.message
                .contains(&trust::crypto::hex_upper(&trust::crypto::sha1(&next))),
        "{e}"
    );
}

#[tokio::test]
async fn refused_when_peer_certificate_not_imported() {
    // The MI lacks SQL Server's certificate → 41973 on both sides, the MI's message naming it.
    let p = pair(false);
    import_mi_on_sql(&p.sql, &p.mi);
    let mi_log = ConnectErrorLog::default();
    let ep = Endpoint::start(loopback(), p.mi_settings(), mi_log.clone())
        .await
        .unwrap();
    let sql_log = ConnectErrorLog::default();
    let e = connect(&p.sql_settings(), &sql_log, MI, ep.local_addr())
        .await
        .unwrap_err();
    eprintln!("client: {e}");
    assert_eq!(e.number, 41973, "{e}");
    assert!(
        e.message
            .contains(&format!("'{MI}' has no certificate imported for '{SQL}'")),
        "{e}"
    );
    assert!(
        e.message.contains(SQL_CERT) && e.message.contains("thumbprint 0x"),
        "{e}"
    );
    assert_eq!(sql_log.last().unwrap(), e);
    let srv = wait_err(&mi_log).await;
    assert_eq!(srv.number, 41973);
    assert!(
        srv.message
            .contains(&format!("'{MI}' has no certificate imported for '{SQL}'")),
        "{srv:?}"
    );
    assert!(
        srv.message
            .contains("subject 'Certificate for Cert_sqlserver1_endpoint'"),
        "{srv:?}"
    );

    // SQL Server lacks the MI's certificate → 41974.
    let p = pair(false);
    import_sql_on_mi(&p.sql, &p.mi);
    let mi_log = ConnectErrorLog::default();
    let ep = Endpoint::start(loopback(), p.mi_settings(), mi_log.clone())
        .await
        .unwrap();
    let e = refused(&p.sql_settings(), MI, ep.local_addr()).await;
    assert_eq!(e.number, 41974, "{e}");
    assert!(
        e.message
            .contains(&format!("'{SQL}' has no certificate imported for '{MI}'")),
        "{e}"
    );
    assert!(e.message.contains(&format!("subject '{MI}'")), "{e}");
    let srv = wait_err(&mi_log).await;
    assert_eq!(srv.number, 41974, "{srv:?}");
    assert!(
        srv.message
            .contains(&format!("'{SQL}' has no certificate imported for '{MI}'")),
        "{srv:?}"
    );
}

#[tokio::test]
async fn refused_wrong_certificate_and_name_binding() {
    let p = pair(true);
    // A second MI, whose certificate SQL Server imported under that MI's own name.
    let mi2 = Side::new();
    let mi2_name = "mi2.6d710bcf372b.database.windows.net";
    mi2.store.ensure_instance_ca(&mi2.c(), "other CA").unwrap();
    mi2.store
        .issue_endpoint_certificate(
            &mi2.c(),
            mi2_name,
            now_utc() - Duration::hours(1),
            now_utc() + Duration::days(30),
        )
        .unwrap();
    let mi2_der = mi2
        .store
        .endpoint_certificate_public_key(&mi2.c(), mi2_name)
        .unwrap();
    p.sql
        .store
        .import_public(&p.sql.c(), mi2_name, &mi2_der)
        .unwrap();

    let sql_log = ConnectErrorLog::default();
    let mut ep = Endpoint::start(loopback(), p.sql_settings(), sql_log.clone())
        .await
        .unwrap();
    let mi2_id = mi2
        .store
        .instance_endpoint_identity(&mi2.c(), mi2_name, now_utc())
        .unwrap();
    // mi2 claiming to be mi1: its certificate is bound to mi2 → refused as the wrong certificate.
    let mut impostor = EndpointSettings::new(
        MI,
        Role::ManagedInstance,
        presenting(
            mi2_id.clone(),
            p.mi.trust(IdentitySource::InstanceEndpoint { fqdn: MI.into() }),
        ),
    );
    let e = refused(&impostor, SQL, ep.local_addr()).await;
    assert_eq!(e.number, 41974, "{e}");
    let srv = wait_err(&sql_log).await;
    assert_eq!(srv.number, 41974);
    assert!(
        srv.message
            .contains(&format!("'{MI}' presented subject '{mi2_name}'")),
        "{srv:?}"
    );
    assert!(
        srv.message.contains("is not the certificate")
            && srv.message.contains(&format!("'{MI}' (subject '{MI}'")),
        "{srv:?}"
    );
    // The same certificate under its own name is accepted.
    impostor.local_name = mi2_name.into();
    let ok = connect(&impostor, &ConnectErrorLog::default(), SQL, ep.local_addr()).await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    assert_eq!(ep.accept().await.unwrap().peer_name, mi2_name);

    // The client side: SQL Server connecting to "mi1" but reaching mi2's endpoint.
    let ep2 = Endpoint::start(
        loopback(),
        EndpointSettings::new(
            mi2_name,
            Role::ManagedInstance,
            presenting(
                mi2_id,
                p.mi.trust(IdentitySource::InstanceEndpoint { fqdn: MI.into() }),
            ),
        ),
        ConnectErrorLog::default(),
    )
    .await
    .unwrap();
    let e = refused(&p.sql_settings(), MI, ep2.local_addr()).await;
    assert_eq!(e.number, 41974);
    assert!(
        e.message
            .contains(&format!("'{MI}' presented subject '{mi2_name}'"))
            && e.message.contains("is not the certificate"),
        "{e}"
    );
}

#[tokio::test]
async fn refused_expired_certificates_either_side() {
    let p = pair(true);
    let sc = p.sql.c();
    // The seed's certificate: EXPIRY_DATE = '03/30/2025', already past.
    let created = p
        .sql
        .store
        .create_self_signed(
            &sc,
            "old",
            "Certificate for old",
            Some(parse_sql_date("01/01/2024").unwrap()),
            Some(parse_sql_date("03/30/2025").unwrap()),
        )
        .unwrap();
    assert!(created.warning.unwrap().message.contains("'old'"));
    // Configured through the store, the expired certificate is refused before anything is sent.
    let s = EndpointSettings::new(
        SQL,
        Role::SqlServer,
        p.sql.trust(IdentitySource::Certificate("old".into())),
    );
    let mi_log = ConnectErrorLog::default();
    let ep = Endpoint::start(loopback(), p.mi_settings(), mi_log.clone())
        .await
        .unwrap();
    let log = ConnectErrorLog::default();
    let e = connect(&s, &log, MI, ep.local_addr()).await.unwrap_err();
    eprintln!("client: {e}");
    assert_eq!(e.number, 41973);
    assert!(
        e.message.contains("'old'") && e.message.contains("expired on 2025-03-30"),
        "{e}"
    );
    assert_eq!(log.last().unwrap().number, 41973);

    // Presented anyway (a peer that does not check its own expiry): the MI refuses it.
    let mc = p.mi.c();
    let old_der = p
        .sql
        .store
        .cert_encoded(&sc, created.certificate_id)
        .unwrap()
        .unwrap();
    p.mi.store.drop_certificate(&mc, SQL).unwrap();
    p.mi.store.import_public(&mc, SQL, &old_der).unwrap();
    let old_id = p
        .sql
        .store
        .local_identity(&sc, "old", parse_sql_date("2025-01-01").unwrap())
        .unwrap();
    let s = EndpointSettings::new(
        SQL,
        Role::SqlServer,
        presenting(
            old_id,
            p.sql.trust(IdentitySource::Certificate(SQL_CERT.into())),
        ),
    );
    let e = refused(&s, MI, ep.local_addr()).await;
    assert_eq!(e.number, 41973, "{e}");
    assert!(e.message.contains("expired"), "{e}");
    let srv = wait_err(&mi_log).await;
    assert!(
        srv.message.contains("subject 'Certificate for old'")
            && srv.message.contains("expired on 2025-03-30"),
        "{srv:?}"
    );

    // The MI's certificate expired: SQL Server refuses it (41974).
    let mi = Side::new();
    mi.store.ensure_instance_ca(&mi.c(), "ca").unwrap();
    let t0 = now_utc() - Duration::days(10);
    let der = mi
        .store
        .issue_endpoint_certificate(&mi.c(), MI, t0, t0 + Duration::days(5))
        .unwrap();
    let id = mi
        .store
        .instance_endpoint_identity(&mi.c(), MI, t0 + Duration::days(1))
        .unwrap();
    let p2 = pair(false);
    import_sql_on_mi(&p2.sql, &mi);
    p2.sql.store.import_public(&p2.sql.c(), MI, &der).unwrap();
    let ep = Endpoint::start(
        loopback(),
        EndpointSettings::new(
            MI,
            Role::ManagedInstance,
            presenting(
                id,
                mi.trust(IdentitySource::InstanceEndpoint { fqdn: MI.into() }),
            ),
        ),
        ConnectErrorLog::default(),
    )
    .await
    .unwrap();
    let e = refused(&p2.sql_settings(), MI, ep.local_addr()).await;
    assert_eq!(e.number, 41974, "{e}");
    assert!(
        e.message
            .contains(&format!("'{MI}' presented subject '{MI}'"))
            && e.message.contains("which expired on"),
        "{e}"
    );
}

#[tokio::test]
async fn refused_when_listening_side_certificate_expired() {
    // The MI's only endpoint certificate has expired and was not rotated: it refuses before TLS,
    // and the connecting side gets the reason in the handshake reply.
    let p = pair(true);
    let mi = Side::new();
    mi.store.ensure_instance_ca(&mi.c(), "ca").unwrap();
    let t0 = now_utc() - Duration::days(10);
    mi.store
        .issue_endpoint_certificate(&mi.c(), MI, t0, t0 + Duration::days(5))
        .unwrap();
    import_sql_on_mi(&p.sql, &mi);
    let settings = EndpointSettings::new(
        MI,
        Role::ManagedInstance,
        mi.trust(IdentitySource::InstanceEndpoint { fqdn: MI.into() }),
    );
    let mi_log = ConnectErrorLog::default();
    let ep = Endpoint::start(loopback(), settings, mi_log.clone())
        .await
        .unwrap();
    let e = refused(&p.sql_settings(), MI, ep.local_addr()).await;
    assert_eq!(e.number, 41974);
    assert!(
        e.message
            .contains("cannot present its endpoint certificate")
            && e.message.contains("was not renewed"),
        "{e}"
    );
    assert_eq!(wait_err(&mi_log).await.message, e.message);
}

#[tokio::test]
async fn refused_when_endpoint_stopped() {
    let p = pair(true);
    let ep = Endpoint::start(loopback(), p.mi_settings(), ConnectErrorLog::default())
        .await
        .unwrap();
    let addr = ep.local_addr();
    ep.stop().await;
    let log = ConnectErrorLog::default();
    let e = connect(&p.sql_settings(), &log, MI, addr)
        .await
        .unwrap_err();
    eprintln!("client: {e}");
    assert_eq!(e.number, 1418, "{e}");
    assert!(
        e.message.contains(&format!("TCP://{addr}"))
            && e.message.contains("stopped or not listening"),
        "{e}"
    );
    assert_eq!(log.last().unwrap().number, 1418);
}

#[tokio::test]
async fn refused_encryption_disabled_against_required() {
    let p = pair(true);
    let mi_log = ConnectErrorLog::default();
    let ep = Endpoint::start(loopback(), p.mi_settings(), mi_log.clone())
        .await
        .unwrap();
    let mut s = p.sql_settings();
    s.encryption = Encryption::Disabled;
    let e = refused(&s, MI, ep.local_addr()).await;
    assert_eq!(e.number, codes::TRANSPORT);
    assert!(
        e.message
            .contains(&format!("'{MI}' has ENCRYPTION = REQUIRED"))
            && e.message
                .contains(&format!("'{SQL}' has ENCRYPTION = DISABLED")),
        "{e}"
    );
    assert_eq!(wait_err(&mi_log).await.message, e.message);
    // RC4 only: no compatible algorithm.
    let mut s = p.sql_settings();
    s.algorithm = Algorithm::Rc4;
    let e = refused(&s, MI, ep.local_addr()).await;
    assert!(
        e.message.contains("no compatible encryption algorithm"),
        "{e}"
    );
    // SUPPORTED against REQUIRED and AES RC4 against AES are fine.
    let mut s = p.sql_settings();
    s.encryption = Encryption::Supported;
    s.algorithm = Algorithm::Rc4Aes;
    connect(&s, &ConnectErrorLog::default(), MI, ep.local_addr())
        .await
        .unwrap();
}

#[tokio::test]
async fn refused_plaintext_clients() {
    let p = pair(true);
    let mi_log = ConnectErrorLog::default();
    let ep = Endpoint::start(loopback(), p.mi_settings(), mi_log.clone())
        .await
        .unwrap();
    // Something that is not the mirroring protocol at all.
    let mut raw = tokio::net::TcpStream::connect(ep.local_addr())
        .await
        .unwrap();
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = raw.read_to_end(&mut reply).await;
    assert!(reply.starts_with(b"MLNK\x01"), "refusal reply sent");
    let e = wait_err(&mi_log).await;
    assert_eq!(e.number, codes::TRANSPORT);
    assert!(
        e.message.contains("plaintext or non-mirroring client"),
        "{e:?}"
    );

    // Our preamble, then frames in plaintext instead of TLS.
    mi_log.clear();
    let mut raw = tokio::net::TcpStream::connect(ep.local_addr())
        .await
        .unwrap();
    let pre = Preamble {
        encryption: Encryption::Required,
        algorithm: Algorithm::Aes,
        claimed_name: SQL.into(),
    };
    raw.write_all(&pre.encode()).await.unwrap();
    let mut ok = [0u8; PREAMBLE_REPLY_FIXED];
    raw.read_exact(&mut ok).await.unwrap();
    assert_eq!(ok[4], 0);
    raw.write_all(&encode_frame(&Message::new(
        MessageKind::Hello,
        encode_hello(&[1], SQL),
    )))
    .await
    .unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink).await;
    let e = wait_err(&mi_log).await;
    assert!(
        e.message.contains(&format!("'{SQL}'")) && e.message.contains("did not negotiate TLS 1.3"),
        "{e:?}"
    );
}

/// Accepts any server certificate: only for the no-client-certificate test.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &pki_types::CertificateDer<'_>,
        _: &[pki_types::CertificateDer<'_>],
        _: &pki_types::ServerName<'_>,
        _: &[u8],
        _: pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn refused_tls_client_without_certificate() {
    let p = pair(true);
    let mi_log = ConnectErrorLog::default();
    let ep = Endpoint::start(loopback(), p.mi_settings(), mi_log.clone())
        .await
        .unwrap();
    let mut raw = tokio::net::TcpStream::connect(ep.local_addr())
        .await
        .unwrap();
    let pre = Preamble {
        encryption: Encryption::Required,
        algorithm: Algorithm::Aes,
        claimed_name: SQL.into(),
    };
    raw.write_all(&pre.encode()).await.unwrap();
    let mut ok = [0u8; PREAMBLE_REPLY_FIXED];
    raw.read_exact(&mut ok).await.unwrap();
    let provider = aes_gcm_provider();
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = pki_types::ServerName::try_from(MI).unwrap();
    if let Ok(mut tls) = conn.connect(name, raw).await {
        let _ = tls
            .write_all(&encode_frame(&Message::new(
                MessageKind::Hello,
                encode_hello(&[1], SQL),
            )))
            .await;
        let mut b = [0u8; 16];
        let r = tls.read(&mut b).await;
        assert!(
            r.is_err() || r.unwrap() == 0,
            "no data for a client without certificate"
        );
    }
    let e = wait_err(&mi_log).await;
    assert_eq!(e.number, 41973, "{e:?}");
    assert!(
        e.message
            .contains(&format!("'{SQL}' presented no certificate")),
        "{e:?}"
    );
}

#[tokio::test]
async fn version_handshake_picks_highest_common() {
    let p = pair(true);
    let mut mi = p.mi_settings();
    mi.protocol_versions = vec![1, 2, 3];
    let mut ep = Endpoint::start(loopback(), mi.clone(), ConnectErrorLog::default())
        .await
        .unwrap();
    let mut sql = p.sql_settings();
    sql.protocol_versions = vec![1, 2];
    let c = connect(&sql, &ConnectErrorLog::default(), MI, ep.local_addr())
        .await
        .unwrap();
    assert_eq!(c.version, 2);
    assert_eq!(ep.accept().await.unwrap().version, 2);
    // No common version: refused with both lists named. ALTER-like reconfigure applies live.
    mi.protocol_versions = vec![3];
    ep.reconfigure(mi);
    let e = refused(&sql, MI, ep.local_addr()).await;
    assert!(e.message.contains("no common protocol version"), "{e}");
}

#[tokio::test]
async fn background_renewal_rotates_before_expiry() {
    let mi = Side::new();
    mi.store.ensure_instance_ca(&mi.c(), "ca").unwrap();
    let first = mi
        .store
        .issue_endpoint_certificate(
            &mi.c(),
            MI,
            now_utc() - Duration::days(80),
            now_utc() + Duration::days(10),
        )
        .unwrap();
    let task = spawn_certificate_renewal(
        mi.db.clone(),
        mi.store.clone(),
        MI.into(),
        std::time::Duration::from_millis(50),
        Duration::days(90),
        Duration::days(30),
    );
    let mut renewed = None;
    for _ in 0..100 {
        let cur = mi
            .store
            .endpoint_certificate_public_key(&mi.c(), MI)
            .unwrap();
        if cur != first {
            renewed = Some(cur);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let renewed = renewed.expect("renewed within 5 s");
    // Not renewed again while the new one is far from expiry.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        mi.store
            .endpoint_certificate_public_key(&mi.c(), MI)
            .unwrap(),
        renewed
    );
    task.abort();
}
