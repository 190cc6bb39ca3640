//! The seed document, end to end: its T-SQL batches (through `milink sql`, a real SQL Server client) and its
//! REST requests (sent with curl: the same URIs, headers and bodies) in the seed's order, against two fresh `milink
//! serve` processes: a SQL Server-role instance and a managed instance. Unchanged except for what is really a
//! placeholder: the `<...>` values, the certificate's EXPIRY_DATE, ports (both share one host) and host names.
//! The DAG statement the seed never shows on SQL Server's side is the documented one.

mod common;

use common::{free_port, rows, wait_listening, Proc};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SA: &str = "Seed!Passw0rd";
const TOKEN: &str = "seed-e2e-token";
const SUB: &str = "00000000-0000-0000-0000-000000000000";
const MI: &str = "managedinstance1";
const MI_FQDN: &str = "managedinstance1.milink.local";

fn serve(dir: &std::path::Path, args: &[&str]) -> Proc {
    common::serve(dir, args, SA, TOKEN)
}

fn sql(port: u16, batch: &str) -> String {
    common::sql(port, SA, batch)
}

/// The seed's PowerShell requests, sent with curl: the same URI, headers and body (trailing comma included).
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "-X", method])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .args(["-H", "Host: management.azure.com"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-H", "Content-Type: application/json"]);
    if !body.is_empty() {
        cmd.args(["--data-binary", body]);
    }
    let out = cmd.output().expect("curl (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (
        head.split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap(),
        head.to_string(),
        body.to_string(),
    )
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    })
}

struct Pair {
    // Processes first: fields drop in order, and the data folders must outlive them.
    _sql: Proc,
    _mi: Proc,
    _sd: tempfile::TempDir,
    _md: tempfile::TempDir,
    sql_port: u16,
    mi_port: u16,
    mgmt_port: u16,
    sql_ep_port: u16,
}

fn start_pair() -> Pair {
    let sd = tempfile::tempdir().unwrap();
    let md = tempfile::tempdir().unwrap();
    let (sql_port, mi_port, mgmt_port, mi_mirror, sql_ep_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let mut sqlp = serve(
        sd.path(),
        &[
            "--name",
            "sqlserver1",
            "--listen",
            &format!("127.0.0.1:{sql_port}"),
        ],
    );
    let mut mip = serve(
        md.path(),
        &[
            "--managed",
            "--name",
            MI,
            "--host",
            MI_FQDN,
            "--listen",
            &format!("127.0.0.1:{mi_port}"),
            "--mirror-listen",
            &format!("127.0.0.1:{mi_mirror}"),
            "--mgmt-plain-http",
            "--mgmt-listen",
            &format!("127.0.0.1:{mgmt_port}"),
            "--subscription",
            SUB,
            "--resource-group",
            "rg-seed",
        ],
    );
    assert!(
        wait_listening(&mut sqlp, sql_port),
        "the SQL Server-role instance did not start"
    );
    assert!(
        wait_listening(&mut mip, mi_port),
        "the managed instance did not start"
    );
    assert!(
        wait_listening(&mut mip, mgmt_port),
        "the management API did not start"
    );
    Pair {
        _sd: sd,
        _md: md,
        _sql: sqlp,
        _mi: mip,
        sql_port,
        mi_port,
        mgmt_port,
        sql_ep_port,
    }
}

#[test]
fn the_seed_document_end_to_end() {
    let p = start_pair();
    let s = p.sql_port;
    let ep = p.sql_ep_port;

    // ## Create certificate on SQL Server and import its public key to Managed Instance
    sql(s, "-- Create MASTER KEY encryption password\n-- Keep the password confidential and in a secure place.\nUSE MASTER\nCREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!MasterKey#2026'\nGO\n\n-- Create the SQL Server certificate for SQL Managed Instance link\nUSE MASTER\nGO\n\nDECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'\nDECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name\nDECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''03/30/2035'''\nEXEC sp_executesql @stmt = @create_sqlserver_certificate_command\nGO\n");
    let certs = sql(s, "USE MASTER\nGO\nSELECT * FROM sys.certificates");
    assert!(
        certs.contains("Cert_sqlserver1_endpoint") && certs.contains("ENCRYPTED_BY_MASTER_KEY"),
        "{certs}"
    );
    let out = sql(s, "-- Show the public key of the generated SQL Server certificate\nUSE MASTER\nGO\nDECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'\nDECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(@sqlserver_certificate_name));\nSELECT @PUBLICKEYENC AS PublicKeyEncoded;\n");
    let public_key_encoded = rows(&out)[0][0].clone();
    assert!(public_key_encoded.starts_with("0x"), "{out}");

    // PowerShell: Get-AzSqlInstance, then the hybridCertificate POST.
    let (st, _, body) = http(p.mgmt_port, "GET", &format!("/subscriptions/{SUB}/providers/Microsoft.Sql/managedInstances?api-version=2021-05-01-preview"), "");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mi_rg = v["value"][0]["properties"]["resourceGroupName"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!(
        "/subscriptions/{SUB}/resourceGroups/{mi_rg}/providers/Microsoft.Sql/managedInstances/{MI}"
    );
    let body_full =
        format!("{{\n    \"properties\":{{ \"PublicBlob\":\"{public_key_encoded}\" }}\n}}");
    let (st, _, body) = http(
        p.mgmt_port,
        "POST",
        &format!("{base}/hybridCertificate?api-version=2020-11-01-preview"),
        &body_full,
    );
    assert_eq!(st, 200, "{body}");

    // ## Get the Managed Instance public certificate public key and import it to SQL Server
    let out = sql(p.mi_port, "-- Execute stored procedure on SQL Managed Instance to get public key of the instance certificate.\nEXEC sp_get_endpoint_certificate @endpoint_type = 4");
    let instance_certificate = rows(&out)[0][0].clone();
    sql(
        s,
        &format!(
            "USE MASTER\nCREATE CERTIFICATE [{MI_FQDN}]\nFROM BINARY = {instance_certificate}"
        ),
    );
    let certs = sql(s, "SELECT * FROM sys.certificates");
    assert!(
        certs.contains(MI_FQDN) && certs.contains("NO_PRIVATE_KEY"),
        "{certs}"
    );

    // ## Mirroring endpoint on SQL Server
    let out = sql(s, "-- View database mirroring endpoints on SQL Server\nSELECT * FROM sys.database_mirroring_endpoints WHERE type_desc = 'DATABASE_MIRRORING'");
    assert!(rows(&out).is_empty(), "{out}");
    sql(s, &format!("-- Create connection endpoint listener on SQL Server\nUSE MASTER\nCREATE ENDPOINT database_mirroring_endpoint\n    STATE=STARTED   \n    AS TCP (LISTENER_PORT={ep}, LISTENER_IP = ALL)\n    FOR DATABASE_MIRRORING (\n        ROLE=ALL,\n        AUTHENTICATION = CERTIFICATE [Cert_sqlserver1_endpoint],\n        ENCRYPTION = REQUIRED ALGORITHM AES\n    )  \nGO\n"));
    let out = sql(s, "-- View database mirroring endpoints on SQL Server\nSELECT\n    name, type_desc, state_desc, role_desc,\n    connection_auth_desc, is_encryption_enabled, encryption_algorithm_desc\nFROM \n    sys.database_mirroring_endpoints");
    assert_eq!(
        rows(&out),
        vec![vec![
            "database_mirroring_endpoint",
            "DATABASE_MIRRORING",
            "STARTED",
            "ALL",
            "CERTIFICATE",
            "1",
            "AES"
        ]]
    );

    // The database to replicate (the seed assumes one exists, in FULL recovery with a full backup).
    sql(s, "CREATE DATABASE SalesDb");
    sql(s, "USE SalesDb; CREATE TABLE dbo.Orders(id INT IDENTITY(1,1) PRIMARY KEY, customer NVARCHAR(50) NOT NULL, amount DECIMAL(10,2) NOT NULL)");
    sql(
        s,
        "USE SalesDb; INSERT INTO Orders(customer, amount) VALUES (N'Zoë', 12.50), (N'bob', 7.25)",
    );
    sql(s, "ALTER DATABASE SalesDb SET RECOVERY FULL");
    sql(
        s,
        &format!(
            "BACKUP DATABASE SalesDb TO DISK = '{}/SalesDb.bak' WITH INIT",
            p._sd.path().display()
        ),
    );

    // ## Availability Group on SQL Server
    let out = sql(s, "SELECT @@SERVERNAME AS SQLServerName ");
    assert_eq!(rows(&out)[0][0], "sqlserver1");
    sql(s, &format!("-- Create primary AG on SQL Server\nUSE MASTER\nCREATE AVAILABILITY GROUP [AG_SalesDb]\nWITH (CLUSTER_TYPE = NONE)\n    FOR database [SalesDb]  \n    REPLICA ON   \n        'sqlserver1' WITH   \n            (  \n            ENDPOINT_URL = 'TCP://127.0.0.1:{ep}',\n            AVAILABILITY_MODE = SYNCHRONOUS_COMMIT,\n            FAILOVER_MODE = MANUAL,\n            SEEDING_MODE = AUTOMATIC\n            );\nGO\n"));
    // The documented DAG statement (mi-link-surface §2), which the seed does not show.
    sql(s, &format!("CREATE AVAILABILITY GROUP [DAG_SalesDb]\nWITH (DISTRIBUTED)\nAVAILABILITY GROUP ON\nN'AG_SalesDb' WITH (LISTENER_URL = 'TCP://127.0.0.1:{ep}', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC, SESSION_TIMEOUT = 20),\nN'{MI}' WITH (LISTENER_URL = 'tcp://{MI_FQDN}:5022;Server=[{MI}]', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);"));
    let out = sql(s, "-- This will show that Availability Group and Distributed Availability Group have been created on SQL Server.\nSELECT\n    name, is_distributed, cluster_type_desc,\n    sequence_number, is_contained\nFROM\n    sys.availability_groups");
    assert_eq!(rows(&out).len(), 2, "{out}");

    // ## Creating SQL Managed Instance link: the seed's PUT, body as PowerShell sends it.
    let body_full = format!("{{\n    \"properties\":{{\n        \"TargetDatabase\":\"SalesDb\",\n        \"SourceEndpoint\":\"TCP://127.0.0.1:{ep}\",\n        \"PrimaryAvailabilityGroupName\":\"AG_SalesDb\",\n        \"SecondaryAvailabilityGroupName\":\"{MI}\",\n    }}\n}}\n");
    let (st, head, body) = http(
        p.mgmt_port,
        "PUT",
        &format!("{base}/distributedAvailabilityGroups/DAG_SalesDb?api-version=2021-05-01-preview"),
        &body_full,
    );
    assert!(st == 202 || st == 200 || st == 201, "{st} {body}");
    let _ = header(&head, "azure-asyncoperation");

    // ## Verifying created SQL Managed Instance link
    let verify = "SELECT\n    r.replica_server_name AS [Replica],\n    r.endpoint_url AS [Endpoint],\n    rs.connected_state_desc AS [Connected state],\n    rs.last_connect_error_description AS [Last connection error],\n    rs.last_connect_error_number AS [Last connection error No],\n    rs.last_connect_error_timestamp AS [Last error timestamp]\nFROM\n    sys.dm_hadr_availability_replica_states rs\n    JOIN sys.availability_replicas r\n    ON rs.replica_id = r.replica_id";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = sql(s, verify);
        if rows(&out).iter().any(|r| r[0] == MI && r[2] == "CONNECTED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the managed instance never showed CONNECTED:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Rows written on the primary are read back on the managed instance.
    sql(
        s,
        "USE SalesDb; INSERT INTO Orders(customer, amount) VALUES (N'after the link', 100.00)",
    );
    loop {
        let out = sql(
            p.mi_port,
            "USE SalesDb; SELECT count(*) AS n, sum(amount) AS total FROM Orders",
        );
        if rows(&out)
            .first()
            .is_some_and(|r| r[0] == "3" && r[1] == "119.75")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rows never reached the managed instance:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The seed's certificate script with its own date (03/30/2025, now past): FreeTDS `tsql` shows the warning at
/// creation, and when the link tries to use the certificate the managed instance refuses it, naming the
/// certificate and its expiry, and the management API reports that as the link's most recent error.
#[test]
fn the_seeds_expired_certificate_is_refused_precisely() {
    if Command::new("tsql").arg("-C").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "FreeTDS tsql is required under CI (scripts/test.sh installs freetds-bin)"
        );
        eprintln!("skipping: FreeTDS tsql is not installed");
        return;
    }
    let p = start_pair();
    let s = p.sql_port;
    let ep = p.sql_ep_port;
    let script = "USE MASTER\nCREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!MasterKey#2026'\nGO\nUSE MASTER\nGO\nDECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'\nDECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name\nDECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''03/30/2025'''\nEXEC sp_executesql @stmt = @create_sqlserver_certificate_command\nGO\nquit\n";
    let mut child = Command::new("tsql")
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &s.to_string(),
            "-U",
            "sa",
            "-P",
            SA,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Cert_sqlserver1_endpoint") && text.to_lowercase().contains("expired"),
        "no expiry warning at creation:\n{text}"
    );

    // The rest of the seed as in the first test, with this certificate.
    let out = sql(s, "USE MASTER\nDECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(N'Cert_sqlserver1_endpoint'));\nSELECT @PUBLICKEYENC AS PublicKeyEncoded;");
    let public_key_encoded = rows(&out)[0][0].clone();
    let base = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-seed/providers/Microsoft.Sql/managedInstances/{MI}"
    );
    let (st, _, body) = http(
        p.mgmt_port,
        "POST",
        &format!("{base}/hybridCertificate?api-version=2020-11-01-preview"),
        &format!("{{\"properties\":{{ \"PublicBlob\":\"{public_key_encoded}\" }}}}"),
    );
    assert_eq!(st, 200, "{body}");
    let out = sql(
        p.mi_port,
        "EXEC sp_get_endpoint_certificate @endpoint_type = 4",
    );
    sql(
        s,
        &format!(
            "USE MASTER\nCREATE CERTIFICATE [{MI_FQDN}]\nFROM BINARY = {}",
            rows(&out)[0][0]
        ),
    );
    sql(s, &format!("USE MASTER\nCREATE ENDPOINT database_mirroring_endpoint STATE=STARTED AS TCP (LISTENER_PORT={ep}, LISTENER_IP = ALL) FOR DATABASE_MIRRORING (ROLE=ALL, AUTHENTICATION = CERTIFICATE [Cert_sqlserver1_endpoint], ENCRYPTION = REQUIRED ALGORITHM AES)"));
    sql(s, "CREATE DATABASE SalesDb");
    sql(s, "ALTER DATABASE SalesDb SET RECOVERY FULL");
    sql(
        s,
        &format!(
            "BACKUP DATABASE SalesDb TO DISK = '{}/SalesDb.bak' WITH INIT",
            p._sd.path().display()
        ),
    );
    sql(s, &format!("CREATE AVAILABILITY GROUP [AG_SalesDb] WITH (CLUSTER_TYPE = NONE) FOR database [SalesDb] REPLICA ON 'sqlserver1' WITH (ENDPOINT_URL = 'TCP://127.0.0.1:{ep}', AVAILABILITY_MODE = SYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);"));
    let body_full = format!("{{\n    \"properties\":{{\n        \"TargetDatabase\":\"SalesDb\",\n        \"SourceEndpoint\":\"TCP://127.0.0.1:{ep}\",\n        \"PrimaryAvailabilityGroupName\":\"AG_SalesDb\",\n        \"SecondaryAvailabilityGroupName\":\"{MI}\",\n    }}\n}}\n");
    let (st, _, body) = http(
        p.mgmt_port,
        "PUT",
        &format!("{base}/distributedAvailabilityGroups/DAG_SalesDb?api-version=2021-05-01-preview"),
        &body_full,
    );
    assert!((200..300).contains(&st), "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, body) = http(
            p.mgmt_port,
            "GET",
            &format!("{base}/distributedAvailabilityGroups/DAG_SalesDb?api-version=2023-08-01"),
            "",
        );
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let err = v["properties"]["databases"][0]["mostRecentLinkError"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !err.is_empty() {
            assert!(
                err.contains("Cert_sqlserver1_endpoint")
                    || err.contains("Certificate for Cert_sqlserver1_endpoint"),
                "{err}"
            );
            assert!(
                err.contains("2025-03-30") || err.contains("03/30/2025"),
                "the refusal names the expiry: {err}"
            );
            assert_eq!(
                v["properties"]["databases"][0]["connectedState"],
                "DISCONNECTED"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no link error reported: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // SQL Server's side keeps the refused handshake for the seed's verification query.
    sql(s, &format!("CREATE AVAILABILITY GROUP [DAG_SalesDb] WITH (DISTRIBUTED) AVAILABILITY GROUP ON N'AG_SalesDb' WITH (LISTENER_URL = 'TCP://127.0.0.1:{ep}', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC), N'{MI}' WITH (LISTENER_URL = 'tcp://{MI_FQDN}:5022;Server=[{MI}]', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);"));
    loop {
        let out = sql(s, "SELECT r.replica_server_name, rs.connected_state_desc, rs.last_connect_error_number, rs.last_connect_error_description FROM sys.dm_hadr_availability_replica_states rs JOIN sys.availability_replicas r ON rs.replica_id = r.replica_id");
        if rows(&out)
            .iter()
            .any(|r| r[0] == MI && r[1] == "DISCONNECTED" && r[2] != "NULL" && !r[3].is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection error on SQL Server's side:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
