//! The `milink` binary: serve an instance, the sqlcmd-style and az-style clients, tokens, benchmarks, the
//! quickstart.

mod bench;
mod bench_link;
mod bench_sql;
mod mi_cli;
mod mi_client;
mod quickstart;
mod sqlcmd;
mod token_cli;

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
        /// engine, sql, link or failover
        suite: String,
        /// Smaller runs (for a smoke check).
        #[arg(long)]
        quick: bool,
    },
    /// A sqlcmd-compatible client: -S host[,port] -U login -P password [-d db] [-Q batch | -i file] [-b] [-C] [-N].
    Sql(sqlcmd::SqlArgs),
    /// The managed instance's management API, with `az sql mi`'s verbs and flags.
    Mi(mi_cli::MiArgs),
    /// Signed, expiring Bearer tokens for the management API.
    Token {
        #[command(subcommand)]
        cmd: token_cli::TokenCmd,
    },
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
    /// Run as a managed instance: own CA and endpoint certificate, mirroring endpoint started without T-SQL.
    #[arg(long)]
    managed: bool,
    /// Database mirroring endpoint of a managed instance.
    #[arg(long, default_value = "0.0.0.0:5022")]
    mirror_listen: String,
    /// Management REST API of a managed instance: HTTPS with the instance's TLS certificate.
    #[arg(long)]
    mgmt_listen: Option<String>,
    /// Serve the management API over plain HTTP (refused unless --mgmt-listen is a loopback address).
    #[arg(long, requires = "mgmt_listen")]
    mgmt_plain_http: bool,
    #[arg(long, default_value = "00000000-0000-0000-0000-000000000000")]
    subscription: String,
    #[arg(long, default_value = "default")]
    resource_group: String,
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
        } => {
            // The SQL Server-role instance listens on `listen`; the managed instance, its mirroring endpoint
            // and its management API on the next three ports.
            let sql = listen
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(14331);
            quickstart::run(
                data_dir,
                quickstart::Ports {
                    sql,
                    mi: sql + 1,
                    mirror: sql + 2,
                    mgmt: sql + 3,
                    mi_mirror: sql + 4,
                },
                seconds,
            )
        }
        Cmd::Sql(a) => sqlcmd::main(a),
        Cmd::Mi(a) => mi_cli::main(a),
        Cmd::Token { cmd } => token_cli::main(cmd),
    }
}

/// A managed instance's management API, and the links it had joined before a restart.
fn start_management(
    rt: &tokio::runtime::Runtime,
    server: &Arc<sqlexec::Server>,
    a: &ServeArgs,
    tls: &tds::TlsIdentity,
) -> Result<()> {
    let hadr = sqlexec::endpoints::state(server).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let settings = hadr
        .settings()
        .context("the managed instance's mirroring endpoint is not running")?;
    let resumed = sqlexec::ags::resume_joins(server, hadr.handle(), &settings)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    if resumed > 0 {
        tracing::info!(links = resumed, "resumed links to SQL Server");
    }
    let Some(listen) = &a.mgmt_listen else {
        return Ok(());
    };
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--mgmt-listen {listen}"))?;
    if a.mgmt_plain_http && !addr.ip().is_loopback() {
        anyhow::bail!("--mgmt-listen {listen} with --mgmt-plain-http: plain HTTP would send Bearer tokens in clear text, so it only listens on loopback (drop --mgmt-plain-http to serve HTTPS)");
    }
    // Signed tokens (`milink token create`) always work; the static token only when set.
    let key = mgmt::auth::SigningKey::load_or_create(&a.data_dir)
        .context("cannot open the management API's token key")?;
    let auth = mgmt::Auth::new(std::env::var("MILINK_API_TOKEN").ok(), Some(key));
    let api = mgmt::Api::with_auth(
        server.clone(),
        &a.subscription,
        &a.resource_group,
        auth,
        settings,
        hadr.handle().clone(),
    );
    let l = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {listen}"))?;
    let scheme = if a.mgmt_plain_http { "http" } else { "https" };
    tracing::info!(mgmt_listen = %l.local_addr()?, scheme, "management API listening");
    if a.mgmt_plain_http {
        rt.spawn(mgmt::serve(l, api, std::future::pending()));
    } else {
        let config = mgmt::tls::server_config(tls)?;
        rt.spawn(mgmt::tls::serve_tls(l, config, api, std::future::pending()));
    }
    Ok(())
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
    let server = sqlexec::Server::new(inst.clone(), &a.name, &host, a.managed);
    let mirror = sqlexec::endpoints::start_at_boot(&server, a.managed.then_some(&*a.mirror_listen))
        .map_err(|e| anyhow::anyhow!("Msg {}: {}", e.number, e.message))?;
    if let Some(m) = mirror {
        tracing::info!(mirror_listen = %m, "database mirroring endpoint listening");
    }
    let handler = Arc::new(sqlexec::endpoint::Endpoint {
        server: server.clone(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if !a.managed {
        // Distributed groups this instance joined with T-SQL (JOIN AVAILABILITY GROUP) reconnect by themselves.
        if let Ok(h) = sqlexec::endpoints::state(&server) {
            if let Some(settings) = h.settings() {
                let n = sqlexec::ags::resume_joins(&server, h.handle(), &settings)
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                if n > 0 {
                    tracing::info!(links = n, "resumed joined distributed availability groups");
                }
            }
        }
    }
    if a.managed {
        start_management(&rt, &server, &a, &tls)?;
    }
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
