//! The `milink` binary: serve an instance, benchmarks, the quickstart.

mod bench;
mod bench_sql;
mod sqlcmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use engine::{DbOptions, Instance, InstanceConfig};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "milink",
    version,
    about = "A SQL Server-compatible instance and its link to a managed instance"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an instance.
    Serve(ServeArgs),
    /// Run a benchmark suite: prints a table, and one JSON object as its last line.
    Bench {
        /// engine
        suite: String,
        /// Smaller runs (for a smoke check).
        #[arg(long)]
        quick: bool,
    },
    /// A sqlcmd-compatible client: -S host[,port] -U login -P password [-d db] [-Q batch | -i file] [-b] [-C] [-N].
    Sql(sqlcmd::SqlArgs),
    /// Start two local instances and run the seed's set-up on them.
    Quickstart {
        #[arg(long, default_value = "quickstart-data")]
        data_dir: PathBuf,
        /// SQL endpoint of the SQL Server-role instance.
        #[arg(long, default_value = "127.0.0.1:14331")]
        listen: String,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:1433")]
    listen: String,
    /// Fully qualified host name (default: the name).
    #[arg(long)]
    host: Option<String>,
    /// TLS certificate (PEM) for the SQL endpoint; default: a self-signed one kept in the data directory.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tiberius=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve(a) => serve(a),
        Cmd::Bench { suite, quick } => bench::run(&suite, quick),
        Cmd::Quickstart {
            data_dir,
            listen,
            seconds,
        } => quickstart(data_dir, listen, seconds),
        Cmd::Sql(a) => sqlcmd::main(a),
    }
}

fn open_instance(name: &str, dir: PathBuf) -> Result<std::sync::Arc<Instance>> {
    Instance::open(InstanceConfig {
        name: name.to_string(),
        data_dir: dir.clone(),
        db_options: DbOptions::default(),
    })
    .map_err(|e| anyhow::anyhow!("{}", e.message))
    .with_context(|| format!("cannot open instance data directory {}", dir.display()))
}

fn serve(a: ServeArgs) -> Result<()> {
    let inst = open_instance(&a.name, a.data_dir.clone())?;
    let host = a.host.clone().unwrap_or_else(|| a.name.clone());
    let sa = std::env::var("MSSQL_SA_PASSWORD").ok();
    sqlexec::logins::ensure_sa(&inst, sa.as_deref())
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => tds::TlsIdentity::from_pem_files(c, k)?,
        _ => tds::TlsIdentity::load_or_generate(
            &a.data_dir,
            &[host.clone(), "localhost".into(), "127.0.0.1".into()],
        )?,
    };
    let config = Arc::new(tds::ServerConfig::new(a.name.clone()).with_tls(&tls)?);
    let server = sqlexec::Server::new(inst.clone(), &a.name, &host, false);
    let handler = Arc::new(sqlexec::endpoint::Endpoint { server });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
        tracing::info!(name = %a.name, host = %host, listen = %listener.local_addr()?, data_dir = %a.data_dir.display(), databases = inst.databases().len(), "instance started");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        };
        tds::serve_until(listener, handler, config, shutdown).await?;
        anyhow::Ok(())
    })?;
    tracing::info!("shutting down");
    inst.shutdown().map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!("clean shutdown complete");
    Ok(())
}

/// What exists today: the SQL Server-role instance serving TDS, a sample database with a steady workload, and
/// its log and log-space views, live. The managed instance and the link arrive with the trust, link and
/// management API work; the quickstart says so instead of pretending.
fn quickstart(dir: PathBuf, listen: String, seconds: Option<u64>) -> Result<()> {
    let sa = std::env::var("MSSQL_SA_PASSWORD").unwrap_or_else(|_| "Quickstart!2026".to_string());
    let inst_dir = dir.join("sqlserver1");
    let inst = open_instance("sqlserver1", inst_dir.clone())?;
    sqlexec::logins::ensure_sa(&inst, Some(&sa)).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let tls =
        tds::TlsIdentity::load_or_generate(&inst_dir, &["sqlserver1".into(), "localhost".into()])?;
    let config = Arc::new(tds::ServerConfig::new("sqlserver1").with_tls(&tls)?);
    let server = sqlexec::Server::new(inst.clone(), "sqlserver1", "sqlserver1", false);
    let handler = Arc::new(sqlexec::endpoint::Endpoint {
        server: server.clone(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&listen))
        .with_context(|| format!("cannot listen on {listen}"))?;
    rt.spawn(async move {
        let _ = tds::serve(listener, handler, config).await;
    });

    // The set-up runs as T-SQL, the way a DBA would type it; running again resumes instead of failing.
    let mut conn =
        sqlexec::Conn::new(server, 50, "sa").map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let setup = "IF DB_ID(N'SampleDB') IS NULL CREATE DATABASE SampleDB";
    run_tsql(&mut conn, setup)?;
    run_tsql(&mut conn, "USE SampleDB")?;
    run_tsql(&mut conn, "IF NOT EXISTS (SELECT 1 FROM sys.tables WHERE name = 'Orders') CREATE TABLE dbo.Orders(id INT IDENTITY(1,1) PRIMARY KEY, customer NVARCHAR(50) NOT NULL, amount DECIMAL(10,2) NOT NULL, at DATETIME2 NOT NULL DEFAULT SYSDATETIME())")?;
    run_tsql(&mut conn, "ALTER DATABASE SampleDB SET RECOVERY FULL")?;
    run_tsql(
        &mut conn,
        &format!(
            "BACKUP DATABASE SampleDB TO DISK = '{}' WITH INIT",
            dir.join("SampleDB.bak").display()
        ),
    )?;

    println!("milink quickstart");
    println!(
        "  SQL Server-role instance 'sqlserver1' listening on {listen} (data in {})",
        inst_dir.display()
    );
    println!(
        "  connect:  milink sql -S {} -U sa -P '{sa}' -d SampleDB",
        listen.replace(':', ",")
    );
    println!(
        "       or:  tsql -H {} -p {} -U sa -P '{sa}'",
        listen.split(':').next().unwrap_or("127.0.0.1"),
        listen.split(':').nth(1).unwrap_or("1433")
    );
    println!("  not yet:  the managed instance, certificates, the mirroring endpoint and the link (issues 4-8).");
    println!("  a workload inserts orders; live log status below. Ctrl-C to stop.\n");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    rt.spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s2.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst)
        && seconds.is_none_or(|s| started.elapsed().as_secs() < s)
    {
        run_tsql(
            &mut conn,
            &format!(
                "INSERT INTO Orders(customer, amount) VALUES (N'customer {}', {}.{:02})",
                n % 97,
                n % 500,
                n % 100
            ),
        )?;
        n += 1;
        if last.elapsed() >= std::time::Duration::from_secs(1) {
            last = std::time::Instant::now();
            let db = inst
                .database("SampleDB")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let s = db.log_space();
            println!(
                "  {:>5.0}s  orders inserted {:>7}  end_of_log_lsn {:>14}  checkpoint_lsn {:>14}  log used {:>6.1}%  log_reuse_wait_desc {}",
                started.elapsed().as_secs_f64(),
                n,
                engine::lsn_numeric(s.log_end_lsn),
                engine::lsn_numeric(s.checkpoint_lsn),
                s.used_percent(),
                s.truncation_holdup
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(conn);
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    inst.shutdown().map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("stopped cleanly; run again to resume with the same data.");
    Ok(())
}

fn run_tsql(conn: &mut sqlexec::Conn, sql: &str) -> Result<()> {
    let mut out = Vec::new();
    conn.execute_batch(sql, &mut out);
    for o in out {
        if let sqlexec::Out::Error(e) = o {
            anyhow::bail!(
                "Msg {}, Level {}, State {}: {}\n  in: {sql}",
                e.number,
                e.severity,
                e.state,
                e.message
            );
        }
    }
    Ok(())
}
