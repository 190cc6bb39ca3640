//! The seed's REST requests against the management API of a managed instance, in the seed's order: find the
//! instance, upload SQL Server's certificate (hybridCertificate), PUT the distributed availability group with the
//! seed's 2021-05-01-preview body (trailing comma included), follow the long-running operation, and see the link
//! on SQL Server's side through the seed's verification query.

mod common;

use common::{header, http, run, server};
use sqlexec::Conn;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsql::Value;

const MI: &str = "managedinstance1";
const MI_FQDN: &str = "managedinstance1.example.database.windows.net";
const SUB: &str = "00000000-0000-0000-0000-000000000000";
const TOKEN: &str = "test-token-123";

#[test]
fn the_seeds_rest_requests_create_the_link() {
    let sd = tempfile::tempdir().unwrap();
    let md = tempfile::tempdir().unwrap();
    let sql = server(sd.path(), "sqlserver1", "127.0.0.1", false);
    let mi = server(md.path(), MI, MI_FQDN, true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // The managed instance: its own CA and endpoint certificate, and its management API.
    let mi_store =
        Arc::new(trust::TrustStore::open(&mi.inst.master(), mi.inst.data_dir()).unwrap());
    mi_store
        .ensure_managed_identity(
            &mi.inst.master(),
            MI_FQDN,
            trust::now_utc(),
            chrono::Duration::days(30),
            chrono::Duration::days(7),
        )
        .unwrap();
    let mi_settings = hadr::transport::EndpointSettings::new(
        MI_FQDN,
        hadr::transport::Role::ManagedInstance,
        Arc::new(hadr::transport::StoreTrust {
            db_path: mi.inst.data_dir().join("master.db"),
            store: mi_store,
            identity: hadr::transport::IdentitySource::InstanceEndpoint {
                fqdn: MI_FQDN.into(),
            },
        }),
    );
    let api = mgmt::Api::new(
        mi.clone(),
        SUB,
        "rg1",
        TOKEN,
        mi_settings,
        rt.handle().clone(),
    );
    let port = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = l.local_addr().unwrap().port();
        tokio::spawn(mgmt::serve(l, api, std::future::pending()));
        p
    });

    // SQL Server: the seed's trust steps, database, AG and DAG in T-SQL, and its mirroring endpoint.
    let mut c = Conn::new(sql.clone(), 51, "sa").unwrap();
    run(
        &mut c,
        "USE MASTER\nCREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!Passw0rd#42'",
    );
    run(&mut c, "USE MASTER\nCREATE CERTIFICATE [Cert_sqlserver1_endpoint] WITH SUBJECT = 'Certificate for Cert_sqlserver1_endpoint', EXPIRY_DATE = '03/30/2035'");
    let r = run(&mut c, "USE MASTER\nDECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(N'Cert_sqlserver1_endpoint')); SELECT @PUBLICKEYENC AS PublicKeyEncoded;");
    let Value::Binary(der) = r[0][0].clone() else {
        panic!()
    };
    let public_key_encoded = format!(
        "0x{}",
        der.iter().map(|b| format!("{b:02X}")).collect::<String>()
    );

    // Errors in ARM's shape.
    let list = format!("/subscriptions/{SUB}/providers/Microsoft.Sql/managedInstances?api-version=2021-05-01-preview");
    let (st, head, body) = http(port, "GET", &list, None, "");
    assert_eq!(st, 401);
    assert!(header(&head, "www-authenticate").is_some());
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    let (st, _, body) = http(
        port,
        "GET",
        &format!("/subscriptions/{SUB}/providers/Microsoft.Sql/managedInstances"),
        Some(TOKEN),
        "",
    );
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("MissingApiVersionParameter"))
    );

    // Get-AzSqlInstance: find the resource group.
    let (st, _, body) = http(port, "GET", &list, Some(TOKEN), "");
    assert_eq!(st, 200);
    let mi_rg = body["value"][0]["properties"]["resourceGroupName"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!(
        "/subscriptions/{SUB}/resourceGroups/{mi_rg}/providers/Microsoft.Sql/managedInstances/{MI}"
    );

    // Upload SQL Server's certificate, exactly the seed's body.
    let body_full =
        format!("{{\n    \"properties\":{{ \"PublicBlob\":\"{public_key_encoded}\" }}\n}}");
    let (st, _, body) = http(
        port,
        "POST",
        &format!("{base}/hybridCertificate?api-version=2020-11-01-preview"),
        Some(TOKEN),
        &body_full,
    );
    assert_eq!(st, 200, "{body}");
    let (st, _, body) = http(
        port,
        "POST",
        &format!("{base}/hybridCertificate?api-version=2020-11-01-preview"),
        Some(TOKEN),
        "{\"properties\":{\"PublicBlob\":\"0x0102\"}}",
    );
    assert_eq!(st, 400, "{body}");

    // The MI's certificate into SQL Server: sp_get_endpoint_certificate, then CREATE CERTIFICATE FROM BINARY.
    let mut mc = Conn::new(mi.clone(), 51, "sa").unwrap();
    let r = run(
        &mut mc,
        "EXEC sp_get_endpoint_certificate @endpoint_type = 4",
    );
    let Value::Binary(mider) = r[0][0].clone() else {
        panic!()
    };
    run(
        &mut c,
        &format!(
            "USE MASTER\nCREATE CERTIFICATE [{MI_FQDN}]\nFROM BINARY = 0x{}",
            mider.iter().map(|b| format!("{b:02X}")).collect::<String>()
        ),
    );

    run(&mut c, "CREATE DATABASE SalesDb");
    run(&mut c, "USE SalesDb; CREATE TABLE t(id INT IDENTITY(1,1) PRIMARY KEY, v NVARCHAR(100)); INSERT INTO t(v) VALUES (N'before the link')");
    run(
        &mut c,
        &format!(
            "BACKUP DATABASE SalesDb TO DISK = '{}/f.bak' WITH INIT",
            sd.path().display()
        ),
    );
    let sql_settings = hadr::transport::EndpointSettings::new(
        "127.0.0.1",
        hadr::transport::Role::SqlServer,
        Arc::new(hadr::transport::StoreTrust {
            db_path: sql.inst.data_dir().join("master.db"),
            store: Arc::new(
                trust::TrustStore::open(&sql.inst.master(), sql.inst.data_dir()).unwrap(),
            ),
            identity: hadr::transport::IdentitySource::Certificate(
                "Cert_sqlserver1_endpoint".into(),
            ),
        }),
    );
    let ep_port = {
        let s = sql.clone();
        rt.block_on(async move {
            let mut ep = hadr::transport::Endpoint::start(
                "127.0.0.1:0".parse().unwrap(),
                sql_settings,
                Default::default(),
            )
            .await
            .unwrap();
            let p = ep.local_addr().port();
            tokio::spawn(async move {
                while let Some(conn) = ep.accept().await {
                    tokio::spawn(sqlexec::ags::serve_link(s.clone(), conn));
                }
            });
            p
        })
    };
    run(&mut c, &format!("USE MASTER\nCREATE AVAILABILITY GROUP [AG_SalesDb] WITH (CLUSTER_TYPE = NONE) FOR database [SalesDb] REPLICA ON 'sqlserver1' WITH (ENDPOINT_URL = 'TCP://127.0.0.1:{ep_port}', AVAILABILITY_MODE = SYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);"));
    run(&mut c, &format!("CREATE AVAILABILITY GROUP [DAG_SalesDb] WITH (DISTRIBUTED) AVAILABILITY GROUP ON N'AG_SalesDb' WITH (LISTENER_URL = 'TCP://127.0.0.1:{ep_port}', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC, SESSION_TIMEOUT = 20), N'{MI}' WITH (LISTENER_URL = 'tcp://{MI_FQDN}:5022;Server=[{MI}]', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);"));

    // The seed's PUT, with its body as PowerShell sends it (the trailing comma included).
    let body_full = format!(
        "{{\n    \"properties\":{{\n        \"TargetDatabase\":\"SalesDb\",\n        \"SourceEndpoint\":\"TCP://127.0.0.1:{ep_port}\",\n        \"PrimaryAvailabilityGroupName\":\"AG_SalesDb\",\n        \"SecondaryAvailabilityGroupName\":\"{MI}\",\n    }}\n}}\n"
    );
    let (st, head, _) = http(
        port,
        "PUT",
        &format!("{base}/distributedAvailabilityGroups/DAG_SalesDb?api-version=2021-05-01-preview"),
        Some(TOKEN),
        &body_full,
    );
    assert_eq!(st, 202);
    let op = header(&head, "azure-asyncoperation").expect("Azure-AsyncOperation");
    assert!(header(&head, "retry-after").is_some() && header(&head, "location").is_some());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, _, body) = http(port, "GET", &op, Some(TOKEN), "");
        assert_eq!(st, 200);
        if body["status"] == "Succeeded" {
            break;
        }
        assert_eq!(body["status"], "InProgress", "{body}");
        assert!(Instant::now() < deadline, "link creation never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The seed's verification query on SQL Server.
    loop {
        let r = run(&mut c, "SELECT r.replica_server_name AS [Replica], r.endpoint_url AS [Endpoint], rs.connected_state_desc AS [Connected state] FROM sys.dm_hadr_availability_replica_states rs JOIN sys.availability_replicas r ON rs.replica_id = r.replica_id");
        if r.iter().any(|r| {
            sqlexec::exec::display(&r[0]) == MI && sqlexec::exec::display(&r[2]) == "CONNECTED"
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    run(
        &mut c,
        "USE SalesDb; INSERT INTO t(v) VALUES (N'after the link')",
    );
    loop {
        let r = run(&mut mc, "USE SalesDb; SELECT count(*) FROM t");
        if r[0][0] == Value::Int(2) {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    // The DAG resource in both API shapes.
    let (st, _, body) = http(
        port,
        "GET",
        &format!("{base}/distributedAvailabilityGroups/DAG_SalesDb?api-version=2021-05-01-preview"),
        Some(TOKEN),
        "",
    );
    assert_eq!(st, 200);
    assert_eq!(body["properties"]["targetDatabase"], "SalesDb");
    let (st, _, body) = http(
        port,
        "GET",
        &format!("{base}/distributedAvailabilityGroups/DAG_SalesDb?api-version=2023-08-01"),
        Some(TOKEN),
        "",
    );
    assert_eq!(st, 200);
    assert_eq!(
        body["properties"]["databases"][0]["connectedState"], "CONNECTED",
        "{body}"
    );
    let (st, _, body) = http(
        port,
        "GET",
        &format!("{base}/endpointCertificates/DATABASE_MIRRORING?api-version=2023-08-01"),
        Some(TOKEN),
        "",
    );
    assert_eq!(st, 200);
    assert!(body["properties"]["publicBlob"]
        .as_str()
        .unwrap()
        .starts_with("0x"));
    // Removing the link leaves the managed instance's database online and readable.
    let (st, _, _) = http(
        port,
        "DELETE",
        &format!("{base}/distributedAvailabilityGroups/DAG_SalesDb?api-version=2023-08-01"),
        Some(TOKEN),
        "",
    );
    assert_eq!(st, 200);
    assert_eq!(
        run(&mut mc, "USE SalesDb; SELECT count(*) FROM t")[0][0],
        Value::Int(2)
    );
    run(
        &mut mc,
        "USE SalesDb; INSERT INTO t(v) VALUES (N'written on the managed instance')",
    );
    assert_eq!(
        run(&mut mc, "USE SalesDb; SELECT count(*) FROM t")[0][0],
        Value::Int(3)
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}
