//! The management API over real HTTPS with the instance's TLS certificate (curl verifying against it), signed
//! and expiring tokens, and ARM-style 4xx answers that change nothing: missing/invalid/expired token, wrong
//! api-version, unknown instance, malformed JSON, a bad certificate blob.

mod common;

use common::*;
use std::process::Command;

/// curl over HTTPS, verifying the server against `ca`; returns (status, headers, body).
fn curl(
    ca: &std::path::Path,
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, serde_json::Value) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-D", "-", "--cacert"])
        .arg(ca)
        .args(["-X", method])
        .arg(format!("https://localhost:{port}{path}"));
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if !body.is_empty() {
        c.args(["-H", "Content-Type: application/json", "--data", body]);
    }
    let out = c.output().expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_string(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn https_with_the_instance_certificate_and_signed_tokens() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP: curl not installed");
        return;
    }
    let md = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let name = "mi2";
    let mi = server(md.path(), name, "mi2.example.local", true);
    // The TDS endpoint's certificate (generated into the data directory), served by the API too.
    let id = tds::TlsIdentity::load_or_generate(
        md.path(),
        &["mi2.example.local".into(), "localhost".into()],
    )
    .unwrap();
    let ca = md.path().join(tds::tls::CERT_FILE);
    let key = mgmt::auth::SigningKey::load_or_create(md.path()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let good = key.create_token("test", now, 3600);
    let expired = key.create_token("test", now - 7200, 3600);
    let foreign = mgmt::auth::SigningKey::load_or_create(tempfile::tempdir().unwrap().path())
        .unwrap()
        .create_token("test", now, 3600);
    let auth = mgmt::Auth::new(None, Some(key));
    let api = mgmt::Api::with_auth(
        mi.clone(),
        SUB,
        "rg1",
        auth,
        mgmt::managed_settings(&mi).unwrap(),
        rt.handle().clone(),
    );
    let port = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = l.local_addr().unwrap().port();
        let cfg = mgmt::tls::server_config(&id).unwrap();
        tokio::spawn(mgmt::tls::serve_tls(l, cfg, api, std::future::pending()));
        p
    });
    let base = format!(
        "/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Sql/managedInstances/{name}"
    );
    let stcs = format!("{base}/serverTrustCertificates?api-version=2023-08-01");
    let put = format!("{base}/serverTrustCertificates/c1?api-version=2023-08-01");
    let blob = sql_server_certificate(tempfile::tempdir().unwrap().path());
    let body = format!("{{\"properties\":{{\"publicBlob\":\"{blob}\"}}}}");

    // Over HTTPS, verified against the instance's certificate; the document needs no token.
    let (st, _, doc) = curl(&ca, port, "GET", "/openapi.json", None, "");
    assert_eq!((st, doc["swagger"].as_str()), (200, Some("2.0")));
    let (st, _, v) = curl(
        &ca,
        port,
        "GET",
        &format!("{base}?api-version=2023-08-01"),
        Some(&good),
        "",
    );
    assert_eq!((st, v["name"].as_str()), (200, Some(name)), "{v}");

    // Refused tokens: 401, RFC 6750's challenge, ARM's envelope, and nothing written.
    for (token, code) in [
        (None, "AuthenticationFailed"),
        (Some(expired.as_str()), "ExpiredAuthenticationToken"),
        (Some(foreign.as_str()), "InvalidAuthenticationToken"),
        (Some("not-a-token"), "InvalidAuthenticationToken"),
    ] {
        let (st, head, v) = curl(&ca, port, "PUT", &put, token, &body);
        assert_eq!((st, v["error"]["code"].as_str()), (401, Some(code)), "{v}");
        let challenge = header(&head, "www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
            "{challenge}"
        );
    }
    // Other refusals, each in ARM's shape.
    let refusals = [
        (format!("{base}/serverTrustCertificates/c1?api-version=2099-01-01"), body.clone(), 400, "InvalidApiVersionParameter"),
        (format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Sql/managedInstances/other/serverTrustCertificates/c1?api-version=2023-08-01"), body.clone(), 404, "ResourceNotFound"),
        (put.clone(), "{\"properties\":{\"publicBlob\":".to_string(), 400, "InvalidRequestContent"),
        (put.clone(), "{\"properties\":{\"publicBlob\":\"0x0102\"}}".to_string(), 400, "InvalidPublicBlob"),
        (put.clone(), "{\"properties\":{}}".to_string(), 400, "MissingPublicBlob"),
    ];
    for (path, b, status, code) in refusals {
        let (st, _, v) = curl(&ca, port, "PUT", &path, Some(&good), &b);
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {v}"
        );
        let t = mi.trust().unwrap();
        assert!(t
            .certificates(&mi.inst.master())
            .unwrap()
            .iter()
            .all(|c| c.name != "c1"));
    }
    let (st, _, v) = curl(&ca, port, "GET", &stcs, Some(&good), "");
    assert_eq!(
        (st, v["value"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );

    // A valid signed token writes; the same PUT again is idempotent.
    for _ in 0..2 {
        let (st, _, v) = curl(&ca, port, "PUT", &put, Some(&good), &body);
        assert_eq!(
            (st, v["properties"]["certificateName"].as_str()),
            (200, Some("c1")),
            "{v}"
        );
    }
    let (st, _, v) = curl(&ca, port, "GET", &stcs, Some(&good), "");
    assert_eq!(
        (st, v["value"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{v}"
    );
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
}
