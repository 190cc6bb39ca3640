//! `milink quickstart`: two local instances under one data folder — a SQL Server-role instance and a managed
//! instance — and the seed's set-up run the way the seed runs it: T-SQL on each instance, the REST requests
//! against the managed instance's management API. Then a sample workload, seeding progress and live link status
//! until Ctrl-C. Every step checks before it acts, so running it again resumes the same set-up.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const RG: &str = "default";
const MI: &str = "managedinstance1";
const MI_FQDN: &str = "managedinstance1.milink.local";
const SQL: &str = "sqlserver1";

pub struct Ports {
    pub sql: u16,
    pub mi: u16,
    pub mirror: u16,
    pub mgmt: u16,
    pub mi_mirror: u16,
}

fn step(n: u32, what: &str) {
    println!("[{n}] {what}");
}

fn tsql(conn: &mut sqlexec::Conn, sql: &str) -> Result<Vec<Vec<tsql::Value>>> {
    let mut out = Vec::new();
    conn.execute_batch(sql, &mut out);
    let mut rows = Vec::new();
    for o in out {
        match o {
            sqlexec::Out::Error(e) => bail!(
                "Msg {}, Level {}, State {}: {}\n  in: {}",
                e.number,
                e.severity,
                e.state,
                e.message,
                sql.trim()
            ),
            sqlexec::Out::Info(n, m) if n != 5701 && n != 0 => println!("      {m}"),
            sqlexec::Out::Row(r) => rows.push(r),
            _ => {}
        }
    }
    Ok(rows)
}

fn text(v: &tsql::Value) -> String {
    sqlexec::exec::display(v)
}

fn http(port: u16, token: &str, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).context("management API")?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: management.azure.com\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Ok((
        head.split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0),
        body.to_string(),
    ))
}

struct Side {
    server: Arc<sqlexec::Server>,
}

fn start_instance(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    name: &str,
    host: &str,
    managed: bool,
    port: u16,
    sa: &str,
) -> Result<Side> {
    let inst = engine::Instance::open(engine::InstanceConfig {
        name: name.into(),
        data_dir: dir.to_path_buf(),
        db_options: Default::default(),
    })
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    sqlexec::logins::ensure_sa(&inst, Some(sa)).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let server = sqlexec::Server::new(inst, name, host, managed);
    let tls = tds::TlsIdentity::load_or_generate(dir, &[host.to_string(), "localhost".into()])?;
    let config = Arc::new(tds::ServerConfig::new(name).with_tls(&tls)?);
    let handler = Arc::new(sqlexec::endpoint::Endpoint {
        server: server.clone(),
    });
    let l = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    rt.spawn(async move {
        let _ = tds::serve(l, handler, config).await;
    });
    Ok(Side { server })
}

pub fn run(dir: PathBuf, ports: Ports, seconds: Option<u64>) -> Result<()> {
    let sa = std::env::var("MSSQL_SA_PASSWORD").unwrap_or_else(|_| "Quickstart!2026".to_string());
    let token =
        std::env::var("MILINK_API_TOKEN").unwrap_or_else(|_| "quickstart-token".to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "milink quickstart — the seed's set-up on two local instances (data in {})",
        dir.display()
    );

    step(
        1,
        "start the SQL Server-role instance and the managed instance",
    );
    let sql = start_instance(&rt, &dir.join(SQL), SQL, "127.0.0.1", false, ports.sql, &sa)?;
    let mi = start_instance(&rt, &dir.join(MI), MI, MI_FQDN, true, ports.mi, &sa)?;
    // The SQL Server side restarts a mirroring endpoint created by an earlier run; the managed instance starts
    // its own (its certificate comes from its CA) without any T-SQL, as the real service does.
    sqlexec::endpoints::start_at_boot(&sql.server, None)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    sqlexec::endpoints::start_at_boot(&mi.server, Some(&format!("127.0.0.1:{}", ports.mi_mirror)))
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let hadr =
        sqlexec::endpoints::state(&mi.server).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mi_settings = hadr
        .settings()
        .context("the managed instance's mirroring endpoint is not running")?;
    let api = mgmt::Api::new(
        mi.server.clone(),
        SUB,
        RG,
        &token,
        mi_settings.clone(),
        hadr.handle().clone(),
    );
    let l = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", ports.mgmt)))
        .context("management API port")?;
    rt.spawn(mgmt::serve(l, api, std::future::pending()));
    let resumed = sqlexec::ags::resume_joins(&mi.server, hadr.handle(), &mi_settings)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut c = sqlexec::Conn::new(sql.server.clone(), 50, "sa")
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut m = sqlexec::Conn::new(mi.server.clone(), 50, "sa")
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;

    step(2, "SQL Server: master key and the endpoint certificate (CREATE MASTER KEY, CREATE CERTIFICATE via sp_executesql)");
    tsql(&mut c, "USE MASTER\nIF NOT EXISTS (SELECT 1 FROM sys.symmetric_keys WHERE symmetric_key_id = 101) CREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Quickstart!MasterKey#1'")?;
    tsql(
        &mut c,
        "USE MASTER
        DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
        DECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name
        DECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''12/31/2030'''
        IF CERT_ID(@sqlserver_certificate_name) IS NULL EXEC sp_executesql @stmt = @create_sqlserver_certificate_command",
    )?;
    let r = tsql(&mut c, "USE MASTER\nDECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'\nDECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(@sqlserver_certificate_name));\nSELECT @PUBLICKEYENC AS PublicKeyEncoded;")?;
    let tsql::Value::Binary(der) = r
        .first()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or(tsql::Value::Null)
    else {
        bail!("no certificate public key")
    };
    let public_key_encoded = format!(
        "0x{}",
        der.iter().map(|b| format!("{b:02X}")).collect::<String>()
    );

    step(
        3,
        "REST: upload SQL Server's certificate to the managed instance (POST …/hybridCertificate)",
    );
    let base = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Sql/managedInstances/{MI}"
    );
    let (st, body) = http(
        ports.mgmt,
        &token,
        "POST",
        &format!("{base}/hybridCertificate?api-version=2020-11-01-preview"),
        &format!("{{\"properties\":{{ \"PublicBlob\":\"{public_key_encoded}\" }}}}"),
    )?;
    if st != 200 {
        bail!("hybridCertificate: HTTP {st}: {body}");
    }

    step(4, "managed instance: EXEC sp_get_endpoint_certificate @endpoint_type = 4; SQL Server: CREATE CERTIFICATE [<MI FQDN>] FROM BINARY");
    let r = tsql(
        &mut m,
        "EXEC sp_get_endpoint_certificate @endpoint_type = 4",
    )?;
    let tsql::Value::Binary(mider) = r
        .first()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or(tsql::Value::Null)
    else {
        bail!("no endpoint certificate")
    };
    let hex: String = mider.iter().map(|b| format!("{b:02X}")).collect();
    tsql(&mut c, &format!("USE MASTER\nIF CERT_ID(N'{MI_FQDN}') IS NULL CREATE CERTIFICATE [{MI_FQDN}] FROM BINARY = 0x{hex}"))?;

    step(
        5,
        &format!(
            "SQL Server: CREATE ENDPOINT on 127.0.0.1:{} (certificate authentication, AES)",
            ports.mirror
        ),
    );
    let mirror = ports.mirror;
    tsql(
        &mut c,
        &format!(
            "USE MASTER
            IF NOT EXISTS (SELECT 1 FROM sys.database_mirroring_endpoints WHERE type_desc = 'DATABASE_MIRRORING')
            CREATE ENDPOINT database_mirroring_endpoint
                STATE=STARTED
                AS TCP (LISTENER_PORT={mirror}, LISTENER_IP = (127.0.0.1))
                FOR DATABASE_MIRRORING (
                    ROLE=ALL,
                    AUTHENTICATION = CERTIFICATE [Cert_{SQL}_endpoint],
                    ENCRYPTION = REQUIRED ALGORITHM AES
                )"
        ),
    )?;

    step(6, "SQL Server: SampleDB in FULL recovery with a full backup, the availability group and the distributed availability group");
    tsql(
        &mut c,
        "IF DB_ID(N'SampleDB') IS NULL CREATE DATABASE SampleDB",
    )?;
    tsql(&mut c, "USE SampleDB\nIF NOT EXISTS (SELECT 1 FROM sys.tables WHERE name = 'Orders') CREATE TABLE dbo.Orders(id INT IDENTITY(1,1) PRIMARY KEY, customer NVARCHAR(50) NOT NULL, amount DECIMAL(10,2) NOT NULL, at DATETIME2 NOT NULL DEFAULT SYSDATETIME())")?;
    tsql(
        &mut c,
        "USE master\nALTER DATABASE SampleDB SET RECOVERY FULL",
    )?;
    let has_ag = !tsql(
        &mut c,
        "SELECT 1 FROM sys.availability_groups WHERE name = 'AG_SampleDB'",
    )?
    .is_empty();
    if !has_ag {
        tsql(
            &mut c,
            &format!(
                "BACKUP DATABASE SampleDB TO DISK = '{}' WITH INIT",
                dir.join("SampleDB.bak").display()
            ),
        )?;
        tsql(&mut c, &format!("CREATE AVAILABILITY GROUP [AG_SampleDB] WITH (CLUSTER_TYPE = NONE) FOR DATABASE [SampleDB] REPLICA ON N'{SQL}' WITH (ENDPOINT_URL = 'TCP://127.0.0.1:{mirror}', AVAILABILITY_MODE = SYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC)"))?;
        tsql(&mut c, &format!("CREATE AVAILABILITY GROUP [DAG_SampleDB] WITH (DISTRIBUTED) AVAILABILITY GROUP ON N'AG_SampleDB' WITH (LISTENER_URL = 'TCP://127.0.0.1:{mirror}', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC, SESSION_TIMEOUT = 20), N'{MI}' WITH (LISTENER_URL = 'tcp://{MI_FQDN}:5022;Server=[{MI}]', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC)"))?;
    }

    if resumed == 0 {
        step(7, "REST: the managed instance joins the distributed availability group (PUT …/distributedAvailabilityGroups/DAG_SampleDB)");
        let body = format!("{{\n    \"properties\":{{\n        \"TargetDatabase\":\"SampleDB\",\n        \"SourceEndpoint\":\"TCP://127.0.0.1:{mirror}\",\n        \"PrimaryAvailabilityGroupName\":\"AG_SampleDB\",\n        \"SecondaryAvailabilityGroupName\":\"{MI}\",\n    }}\n}}\n");
        let (st, body) = http(
            ports.mgmt,
            &token,
            "PUT",
            &format!(
                "{base}/distributedAvailabilityGroups/DAG_SampleDB?api-version=2021-05-01-preview"
            ),
            &body,
        )?;
        if !(200..300).contains(&st) {
            bail!("distributedAvailabilityGroups PUT: HTTP {st}: {body}");
        }
    } else {
        step(
            7,
            "the managed instance resumes its link (set up by an earlier run)",
        );
    }

    step(8, "seeding (sys.dm_hadr_physical_seeding_stats on SQL Server) until the managed instance's copy is online");
    let started = Instant::now();
    while mi.server.inst.database("SampleDB").is_err() {
        let r = tsql(&mut c, "SELECT transferred_size_bytes, database_size_bytes, internal_state_desc FROM sys.dm_hadr_physical_seeding_stats")?;
        if let Some(r) = r.first() {
            println!(
                "      seeding: {} of {} bytes ({})",
                text(&r[0]),
                text(&r[1]),
                text(&r[2])
            );
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("seeding did not complete in 2 minutes: check the link status on SQL Server (sys.dm_hadr_availability_replica_states)");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!();
    println!("The link is up. Connect with milink sql or any SQL Server client:");
    println!(
        "  SQL Server:        milink sql -S 127.0.0.1,{} -U sa -P '{sa}' -d SampleDB",
        ports.sql
    );
    println!("  managed instance:  milink sql -S 127.0.0.1,{} -U sa -P '{sa}' -d SampleDB   (read-only secondary)", ports.mi);
    println!("  management API:    http://127.0.0.1:{}{base}?api-version=2023-08-01  (Authorization: Bearer {token})", ports.mgmt);
    println!("A workload inserts orders on SQL Server; live status below. Ctrl-C to stop.\n");

    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    rt.spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s2.store(true, Ordering::SeqCst);
    });
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && seconds.is_none_or(|s| t0.elapsed().as_secs() < s) {
        tsql(&mut c, &format!("USE SampleDB; INSERT INTO Orders(customer, amount) VALUES (N'customer {}', {}.{:02})", n % 97, n % 500, n % 100))?;
        n += 1;
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let r = tsql(&mut c, "SELECT r.replica_server_name, rs.connected_state_desc FROM sys.dm_hadr_availability_replica_states rs JOIN sys.availability_replicas r ON rs.replica_id = r.replica_id WHERE r.replica_server_name = N'managedinstance1'")?;
            let state = r.first().map(|r| text(&r[1])).unwrap_or_default();
            let p = sql
                .server
                .inst
                .database("SampleDB")
                .map(|d| d.log().durable_lsn())
                .unwrap_or(0);
            let s = mi
                .server
                .inst
                .database("SampleDB")
                .map(|d| d.log().durable_lsn())
                .unwrap_or(0);
            let rows_mi = tsql(&mut m, "USE SampleDB; SELECT count(*) FROM Orders")
                .ok()
                .and_then(|r| r.first().map(|r| text(&r[0])))
                .unwrap_or_default();
            println!(
                "  {:>4.0}s  {state:<12}  primary end_of_log_lsn {:>12}  secondary hardened {:>12}  behind {:>4} blocks  orders on the managed instance {rows_mi}",
                t0.elapsed().as_secs_f64(),
                engine::lsn_numeric(p),
                engine::lsn_numeric(s),
                p.saturating_sub(s)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(c);
    drop(m);
    rt.shutdown_timeout(Duration::from_secs(2));
    sql.server
        .inst
        .shutdown()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    mi.server
        .inst
        .shutdown()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("stopped cleanly; run again to resume the same set-up.");
    Ok(())
}
