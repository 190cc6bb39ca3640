//! The seed's SQL Server side in T-SQL, the managed instance joining the distributed group through the engine
//! API the management API will call, and the seed's verification query showing the managed instance CONNECTED.

use sqlexec::{Conn, Out, Server};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsql::Value;

const MI_FQDN: &str = "managedinstance1.example.database.windows.net";

fn server(dir: &std::path::Path, name: &str, managed: bool) -> Arc<Server> {
    let inst = engine::Instance::open(engine::InstanceConfig {
        name: name.into(),
        data_dir: dir.to_path_buf(),
        db_options: Default::default(),
    })
    .unwrap();
    Server::new(
        inst,
        name,
        if managed { MI_FQDN } else { "127.0.0.1" },
        managed,
    )
}

fn run(c: &mut Conn, sql: &str) -> Vec<Out> {
    let mut out = Vec::new();
    c.execute_batch(sql, &mut out);
    if let Some(Out::Error(e)) = out.iter().find(|o| matches!(o, Out::Error(_))) {
        panic!("{sql}\nMsg {}: {}", e.number, e.message);
    }
    out
}

fn rows(out: Vec<Out>) -> Vec<Vec<Value>> {
    out.into_iter()
        .filter_map(|o| if let Out::Row(r) = o { Some(r) } else { None })
        .collect()
}

#[test]
fn seed_flow_sql_side_in_tsql_and_the_managed_instance_joins() {
    let sd = tempfile::tempdir().unwrap();
    let md = tempfile::tempdir().unwrap();
    let sql = server(sd.path(), "sqlserver1", false);
    let mi = server(md.path(), "managedinstance1", true);
    let mut c = Conn::new(sql.clone(), 51, "sa").unwrap();

    // Trust: the seed's script on SQL Server.
    run(
        &mut c,
        "USE MASTER\nCREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!Passw0rd#42'",
    );
    run(
        &mut c,
        "USE MASTER
        DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
        DECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name
        DECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''03/30/2035'''
        EXEC sp_executesql @stmt = @create_sqlserver_certificate_command",
    );
    let r = rows(run(
        &mut c,
        "USE MASTER
        DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
        DECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(@sqlserver_certificate_name));
        SELECT @PUBLICKEYENC AS PublicKeyEncoded;",
    ));
    let Value::Binary(sql_cert) = r[0][0].clone() else {
        panic!()
    };
    // The managed instance's side (what its hybridCertificate upload and CA do).
    let mi_store = mi.trust().unwrap();
    {
        let m = mi.inst.master();
        mi_store
            .ensure_managed_identity(
                &m,
                MI_FQDN,
                trust::now_utc(),
                chrono::Duration::days(30),
                chrono::Duration::days(7),
            )
            .unwrap();
        mi_store.import_public(&m, "127.0.0.1", &sql_cert).unwrap();
    }
    let mut mc = Conn::new(mi.clone(), 51, "sa").unwrap();
    let r = rows(run(
        &mut mc,
        "EXEC sp_get_endpoint_certificate @endpoint_type = 4",
    ));
    let Value::Binary(mi_cert) = r[0][0].clone() else {
        panic!()
    };
    let hex: String = mi_cert.iter().map(|b| format!("{b:02X}")).collect();
    run(
        &mut c,
        &format!("USE MASTER\nCREATE CERTIFICATE [{MI_FQDN}]\nFROM BINARY = 0x{hex}"),
    );

    // The database, its backup, the AG and the DAG, as the seed creates them.
    run(&mut c, "CREATE DATABASE SalesDb");
    run(&mut c, "USE SalesDb; CREATE TABLE orders(id INT IDENTITY(1,1) PRIMARY KEY, amount DECIMAL(10,2) NOT NULL)");
    for i in 0..200 {
        run(
            &mut c,
            &format!("INSERT INTO orders(amount) VALUES ({i}.25)"),
        );
    }
    run(
        &mut c,
        &format!(
            "BACKUP DATABASE SalesDb TO DISK = '{}/full.bak' WITH INIT",
            sd.path().display()
        ),
    );
    run(
        &mut c,
        "USE MASTER
        CREATE AVAILABILITY GROUP [AG_SalesDb]
        WITH (CLUSTER_TYPE = NONE)
            FOR database [SalesDb]
            REPLICA ON
                'sqlserver1' WITH
                (ENDPOINT_URL = 'TCP://127.0.0.1:5022', AVAILABILITY_MODE = SYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);",
    );
    run(
        &mut c,
        &format!(
            "CREATE AVAILABILITY GROUP [DAG_SalesDb] WITH (DISTRIBUTED) AVAILABILITY GROUP ON
            N'AG_SalesDb' WITH (LISTENER_URL = 'TCP://127.0.0.1:5022', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC, SESSION_TIMEOUT = 20),
            N'managedinstance1' WITH (LISTENER_URL = 'tcp://{MI_FQDN}:5022;Server=[managedinstance1]', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);"
        ),
    );

    // SQL Server's mirroring endpoint (certificate authentication, AES) hands link sessions to the AG layer.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
    let port = {
        let s = sql.clone();
        rt.block_on(async move {
            let mut ep = hadr::transport::Endpoint::start(
                "127.0.0.1:0".parse().unwrap(),
                sql_settings,
                Default::default(),
            )
            .await
            .unwrap();
            let port = ep.local_addr().port();
            tokio::spawn(async move {
                while let Some(conn) = ep.accept().await {
                    tokio::spawn(sqlexec::ags::serve_link(s.clone(), conn));
                }
            });
            port
        })
    };

    // The managed instance joins (the management API's PUT distributedAvailabilityGroups does this).
    let mi_settings = hadr::transport::EndpointSettings::new(
        MI_FQDN,
        hadr::transport::Role::ManagedInstance,
        Arc::new(hadr::transport::StoreTrust {
            db_path: mi.inst.data_dir().join("master.db"),
            store: Arc::new(
                trust::TrustStore::open(&mi.inst.master(), mi.inst.data_dir()).unwrap(),
            ),
            identity: hadr::transport::IdentitySource::InstanceEndpoint {
                fqdn: MI_FQDN.into(),
            },
        }),
    );
    sqlexec::ags::join_distributed_group(
        &mi,
        rt.handle(),
        mi_settings,
        "DAG_SalesDb",
        "AG_SalesDb",
        "managedinstance1",
        "SalesDb",
        &format!("TCP://127.0.0.1:{port}"),
    )
    .unwrap();

    // The seed's verification query, refreshed until the managed instance shows CONNECTED.
    let verify = "SELECT
            r.replica_server_name AS [Replica],
            r.endpoint_url AS [Endpoint],
            rs.connected_state_desc AS [Connected state],
            rs.last_connect_error_description AS [Last connection error],
            rs.last_connect_error_number AS [Last connection error No],
            rs.last_connect_error_timestamp AS [Last error timestamp]
        FROM
            sys.dm_hadr_availability_replica_states rs
            JOIN sys.availability_replicas r
            ON rs.replica_id = r.replica_id";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rows(run(&mut c, verify));
        let mi_row = r
            .iter()
            .find(|r| sqlexec::exec::display(&r[0]) == "managedinstance1")
            .expect("MI replica row")
            .clone();
        if sqlexec::exec::display(&mi_row[2]) == "CONNECTED" && mi.inst.database("SalesDb").is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "never CONNECTED: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Rows written on the primary are read back on the managed instance.
    run(
        &mut c,
        "USE SalesDb; INSERT INTO orders(amount) VALUES (999.99)",
    );
    let want = rows(run(
        &mut c,
        "USE SalesDb; SELECT count(*), sum(amount) FROM orders",
    ));
    loop {
        let got = rows(run(
            &mut mc,
            "USE SalesDb; SELECT count(*), sum(amount) FROM orders",
        ));
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "MI has {got:?}, primary {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = rows(run(&mut c, "SELECT synchronization_state_desc, is_local FROM sys.dm_hadr_database_replica_states WHERE is_local = 0"));
    assert!(!r.is_empty());
    let r = rows(run(&mut c, "SELECT internal_state_desc, transferred_size_bytes FROM sys.dm_hadr_physical_seeding_stats"));
    assert_eq!(sqlexec::exec::display(&r[0][0]), "Success");
    // While linked, the primary keeps log for the managed instance; dropping the link releases it.
    assert!(sql
        .inst
        .database("SalesDb")
        .unwrap()
        .log_holds()
        .iter()
        .any(|(w, _)| w.starts_with("replica:")));
    let r = rows(run(&mut c, "SELECT current_state, performed_seeding, number_of_attempts FROM sys.dm_hadr_automatic_seeding WHERE database_name = N'SalesDb'"));
    assert_eq!(
        r.iter()
            .map(|r| r
                .iter()
                .map(sqlexec::exec::display)
                .collect::<Vec<_>>()
                .join("|"))
            .collect::<Vec<_>>(),
        vec!["COMPLETED|1|1"]
    );
    run(&mut c, "DROP AVAILABILITY GROUP [DAG_SalesDb]");
    assert!(sql.inst.database("SalesDb").unwrap().log_holds().is_empty());
    // The managed instance keeps reconnecting, but SQL Server no longer replicates the database to it.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        sql.inst.database("SalesDb").unwrap().log_holds().is_empty(),
        "{:?}",
        sql.inst.database("SalesDb").unwrap().log_holds()
    );
    let refused = sqlexec::ags::link_stats(&mi, "SalesDb")
        .lock()
        .unwrap()
        .last_error
        .clone();
    assert_eq!(refused.map(|e| e.0), Some(35250));
    assert_ne!(
        sql.inst.database("SalesDb").unwrap().log_reuse().reason,
        "AVAILABILITY_REPLICA"
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn altering_or_dropping_a_missing_availability_group_is_15151() {
    let dir = tempfile::tempdir().unwrap();
    let sql = server(dir.path(), "sqlserver1", false);
    let mut c = Conn::new(sql.clone(), 51, "sa").unwrap();
    for (stmt, action) in [
        (
            "ALTER AVAILABILITY GROUP [NoSuchAG] GRANT CREATE ANY DATABASE",
            "find",
        ),
        ("DROP AVAILABILITY GROUP [NoSuchAG]", "drop"),
    ] {
        let mut out = Vec::new();
        c.execute_batch(stmt, &mut out);
        let e = out
            .iter()
            .find_map(|o| if let Out::Error(e) = o { Some(e) } else { None })
            .unwrap_or_else(|| panic!("{stmt} succeeded"));
        assert_eq!((e.number, e.severity), (15151, 16), "{stmt}: {}", e.message);
        assert_eq!(
            e.message,
            format!("Cannot {action} the availability group 'NoSuchAG', because it does not exist or you do not have permission.")
        );
    }
}
