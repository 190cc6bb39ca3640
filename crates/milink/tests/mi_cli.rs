//! `milink mi …` and `milink token create` end to end against a real `milink serve --managed` whose management
//! API serves HTTPS with the instance's certificate (the CLI verifies it with --ca-file), and schemathesis run
//! against the served OpenAPI document.

mod common;

use common::{free_port, serve, wait_listening, Proc};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SA: &str = "Str0ng!Passw0rd";
const TOKEN: &str = "static-test-token";
const MI: &str = "mi1";

struct Mi {
    _p: Proc,
    dir: tempfile::TempDir,
    sql_port: u16,
    endpoint: String,
}

fn start() -> Mi {
    let dir = tempfile::tempdir().unwrap();
    let (sql_port, mirror, mgmt) = (free_port(), free_port(), free_port());
    let mut p = serve(
        dir.path(),
        &[
            "--managed",
            "--name",
            MI,
            "--host",
            "mi1.example.local",
            "--listen",
            &format!("127.0.0.1:{sql_port}"),
            "--mirror-listen",
            &format!("127.0.0.1:{mirror}"),
            "--mgmt-listen",
            &format!("127.0.0.1:{mgmt}"),
        ],
        SA,
        TOKEN,
    );
    assert!(wait_listening(&mut p, mgmt), "milink serve exited");
    Mi {
        _p: p,
        dir,
        sql_port,
        endpoint: format!("https://127.0.0.1:{mgmt}"),
    }
}

impl Mi {
    fn ca(&self) -> PathBuf {
        self.dir.path().join("tds-cert.pem")
    }

    /// `milink mi <args>` with the endpoint, CA file and a token.
    fn mi(&self, token: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_milink"))
            .arg("mi")
            .args(args)
            .arg("--endpoint")
            .arg(&self.endpoint)
            .arg("--ca-file")
            .arg(self.ca())
            .env("MILINK_API_TOKEN", token)
            .env_remove("MILINK_MGMT_ENDPOINT")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.mi(TOKEN, args);
        assert!(
            o.status.success(),
            "milink mi {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

fn sql(port: u16, batch: &str) -> String {
    common::sql(port, SA, batch)
}

/// An instance's certificate as CERTENCODED gives it: the managed instance is an instance too.
fn certificate_blob(port: u16) -> String {
    sql(
        port,
        "CREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!Passw0rd#42'",
    );
    sql(port, "CREATE CERTIFICATE [Cert_box] WITH SUBJECT = 'Certificate for Cert_box', EXPIRY_DATE = '03/30/2035'");
    let out = sql(
        port,
        "SET NOCOUNT ON; SELECT CERTENCODED(CERT_ID(N'Cert_box'))",
    );
    out.split_whitespace()
        .find(|w| w.starts_with("0x"))
        .expect("a 0x… blob")
        .to_string()
}

fn token_create(dir: &Path, expires: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_milink"))
        .args(["token", "create", "--expires-in", expires, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn az_style_cli_against_a_real_managed_instance() {
    let mi = start();
    let shown = mi.json(&["show"]);
    assert_eq!(shown["name"], MI);
    assert_eq!(shown["type"], "Microsoft.Sql/managedInstances");
    let table = mi.ok(&["show", "-g", "default", "-n", MI, "-o", "table"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("Name") && lines[1].starts_with("----"),
        "{table}"
    );
    assert!(lines[2].starts_with(MI), "{table}");

    // partner-cert create / list / show / delete.
    let blob = certificate_blob(mi.sql_port);
    let created = mi.json(&[
        "partner-cert",
        "create",
        "--mi",
        MI,
        "-g",
        "default",
        "-n",
        "box1",
        "--public-blob",
        &blob,
    ]);
    assert_eq!(created["properties"]["certificateName"], "box1");
    let list = mi.json(&["partner-cert", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let table = mi.ok(&["partner-cert", "list", "-o", "table"]);
    assert!(
        table.lines().nth(2).is_some_and(|l| l.starts_with("box1")),
        "{table}"
    );
    let one = mi.json(&["partner-cert", "show", "--instance-name", MI, "-n", "box1"]);
    assert_eq!(
        one["properties"]["publicBlob"].as_str(),
        Some(blob.as_str())
    );
    mi.ok(&["partner-cert", "delete", "-n", "box1", "--yes"]);
    assert_eq!(mi.json(&["partner-cert", "list"]), serde_json::json!([]));

    // endpoint-cert and link list/show.
    let ec = mi.json(&["endpoint-cert", "show"]);
    assert!(ec["properties"]["publicBlob"]
        .as_str()
        .unwrap()
        .starts_with("0x"));
    assert_eq!(mi.json(&["link", "list"]), serde_json::json!([]));
    let o = mi.mi(TOKEN, &["link", "show", "-n", "nolink"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("ERROR: (ResourceNotFound)"));

    // A bad token: ARM's error, printed as az prints it, exit 1.
    let o = mi.mi("wrong", &["partner-cert", "list"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("(InvalidAuthenticationToken)")
            && err.contains("Code: InvalidAuthenticationToken"),
        "{err}"
    );

    // Signed tokens from the data directory work; an expired one is told apart.
    let t = token_create(mi.dir.path(), "10m");
    let o = mi.mi(&t, &["show"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let short = token_create(mi.dir.path(), "1s");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let o = mi.mi(&short, &["show"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(ExpiredAuthenticationToken)"));

    // Without --ca-file the self-signed certificate is not trusted; --insecure-loopback is for loopback only.
    let o = Command::new(env!("CARGO_BIN_EXE_milink"))
        .args(["mi", "show", "--endpoint", &mi.endpoint, "--token", TOKEN])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let o = Command::new(env!("CARGO_BIN_EXE_milink"))
        .args([
            "mi",
            "show",
            "--insecure-loopback",
            "--endpoint",
            &mi.endpoint,
            "--token",
            TOKEN,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn plain_http_management_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_milink"))
        .args(["serve", "--managed", "--name", "mi9", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--mirror-listen", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--mgmt-plain-http",
            "--mgmt-listen",
            &format!("0.0.0.0:{}", free_port()),
        ])
        .env("MSSQL_SA_PASSWORD", SA)
        .env("MILINK_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("only listens on loopback"), "{err}");
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let Some(clients) = std::env::var_os("MILINK_TEST_CLIENTS") else {
        eprintln!("SKIP: MILINK_TEST_CLIENTS is not set (scripts/test.sh installs schemathesis)");
        return;
    };
    let st = PathBuf::from(clients).join("venv/bin/schemathesis");
    assert!(st.exists(), "{} missing: run scripts/test.sh", st.display());
    let mi = start();
    // The instance's own ids, so generated requests reach the handlers instead of 404 on a random name.
    let config = mi.dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!("[parameters]\n\"path.subscriptionId\" = \"00000000-0000-0000-0000-000000000000\"\n\"path.resourceGroupName\" = \"default\"\n\"path.managedInstanceName\" = \"{MI}\"\n"),
    )
    .unwrap();
    // Its cache (.schemathesis/) goes to the temporary directory, not the source tree.
    let out = Command::new(&st)
        .current_dir(mi.dir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", mi.endpoint))
        .args(["--url", &mi.endpoint])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .arg("--tls-verify")
        .arg(mi.ca())
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", "15", "--seed", "42"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis:\n{text}");
    eprintln!(
        "{}",
        text.lines().rev().take(12).collect::<Vec<_>>().join("\n")
    );
}
