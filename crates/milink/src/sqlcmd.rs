//! `milink sql`: a sqlcmd-compatible client. Batches split on GO lines; result sets and messages print the way
//! sqlcmd prints them.

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, QueryItem};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

#[derive(clap::Args, Debug, Clone)]
pub struct SqlArgs {
    /// Server: host[,port] (default port 1433).
    #[arg(short = 'S', default_value = "127.0.0.1")]
    pub server: String,
    #[arg(short = 'U', default_value = "sa")]
    pub user: String,
    /// Password (default: env MSSQL_SA_PASSWORD).
    #[arg(short = 'P')]
    pub password: Option<String>,
    #[arg(short = 'd')]
    pub database: Option<String>,
    /// Run this batch and exit.
    #[arg(short = 'Q', allow_hyphen_values = true)]
    pub query: Option<String>,
    /// Run this batch, then stay interactive.
    #[arg(short = 'q', allow_hyphen_values = true)]
    pub interactive_query: Option<String>,
    /// Run this script file (batches separated by GO) and exit.
    #[arg(short = 'i')]
    pub input: Option<std::path::PathBuf>,
    /// Exit with an error code when a batch fails.
    #[arg(short = 'b')]
    pub fail_on_error: bool,
    /// Trust the server certificate.
    #[arg(short = 'C')]
    pub trust: bool,
    /// Encrypt the connection.
    #[arg(short = 'N')]
    pub encrypt: bool,
}

pub async fn connect(a: &SqlArgs) -> Result<Client<tokio_util::compat::Compat<TcpStream>>> {
    let (host, port) = match a.server.split_once(',') {
        Some((h, p)) => (h.to_string(), p.trim().parse().context("port")?),
        None => (a.server.clone(), 1433u16),
    };
    let mut cfg = Config::new();
    cfg.host(&host);
    cfg.port(port);
    let pw = a
        .password
        .clone()
        .or_else(|| std::env::var("MSSQL_SA_PASSWORD").ok())
        .unwrap_or_default();
    cfg.authentication(AuthMethod::sql_server(&a.user, &pw));
    if let Some(d) = &a.database {
        cfg.database(d);
    }
    cfg.encryption(if a.encrypt {
        EncryptionLevel::Required
    } else {
        EncryptionLevel::Off
    });
    // A local instance's certificate is self-signed: -C is implied for loopback.
    if a.trust || host == "127.0.0.1" || host == "localhost" {
        cfg.trust_cert();
    }
    let tcp = TcpStream::connect(cfg.get_addr())
        .await
        .with_context(|| format!("cannot connect to {host},{port}"))?;
    tcp.set_nodelay(true)?;
    Ok(Client::connect(cfg, tcp.compat_write()).await?)
}

/// Split a script into batches on lines that hold only GO (any case), as sqlcmd does.
pub fn split_go(script: &str) -> Vec<String> {
    tsql::split_go(script)
}

fn cell(row: &tiberius::Row, i: usize) -> String {
    use tiberius::ColumnData as C;
    let data = row.cells().nth(i).map(|(_, d)| d.clone());
    match data {
        None => "NULL".into(),
        Some(d) => match d {
            C::U8(Some(v)) => v.to_string(),
            C::I16(Some(v)) => v.to_string(),
            C::I32(Some(v)) => v.to_string(),
            C::I64(Some(v)) => v.to_string(),
            C::F32(Some(v)) => v.to_string(),
            C::F64(Some(v)) => v.to_string(),
            C::Bit(Some(v)) => (v as u8).to_string(),
            C::String(Some(v)) => v.to_string(),
            C::Guid(Some(v)) => v.to_string().to_uppercase(),
            C::Binary(Some(v)) => format!(
                "0x{}",
                v.iter().map(|b| format!("{b:02X}")).collect::<String>()
            ),
            C::Numeric(Some(v)) => v.to_string(),
            C::Xml(Some(v)) => v.to_string(),
            other => match row.try_get::<chrono_str::Str, usize>(i) {
                Ok(Some(s)) => s.0,
                _ => format!("{other:?}")
                    .replace("Some(", "")
                    .trim_end_matches(')')
                    .to_string(),
            },
        },
    }
}

mod chrono_str {
    pub struct Str(pub String);
    impl<'a> tiberius::FromSql<'a> for Str {
        fn from_sql(v: &'a tiberius::ColumnData<'static>) -> tiberius::Result<Option<Self>> {
            use tiberius::time::chrono::{
                DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime,
            };
            Ok(match v {
                tiberius::ColumnData::DateTime2(Some(_))
                | tiberius::ColumnData::DateTime(Some(_))
                | tiberius::ColumnData::SmallDateTime(Some(_)) => NaiveDateTime::from_sql(v)?
                    .map(|d| Str(d.format("%Y-%m-%d %H:%M:%S%.f").to_string())),
                tiberius::ColumnData::Date(Some(_)) => {
                    NaiveDate::from_sql(v)?.map(|d| Str(d.to_string()))
                }
                tiberius::ColumnData::Time(Some(_)) => {
                    NaiveTime::from_sql(v)?.map(|d| Str(d.to_string()))
                }
                tiberius::ColumnData::DateTimeOffset(Some(_)) => {
                    DateTime::<FixedOffset>::from_sql(v)?.map(|d| Str(d.to_string()))
                }
                _ => None,
            })
        }
    }
}

/// Run one batch, printing results; returns false if the server reported an error.
pub async fn run_batch(
    client: &mut Client<tokio_util::compat::Compat<TcpStream>>,
    batch: &str,
) -> Result<bool> {
    let mut stream = match client.simple_query(batch).await {
        Ok(s) => s,
        Err(e) => {
            print_error(&e);
            return Ok(false);
        }
    };
    let mut cols: Vec<String> = Vec::new();
    let mut rows = 0u64;
    let mut ok = true;
    loop {
        match stream.try_next().await {
            Ok(Some(QueryItem::Metadata(m))) => {
                if !cols.is_empty() {
                    println!(
                        "\n({rows} row{} affected)\n",
                        if rows == 1 { "" } else { "s" }
                    );
                }
                cols = m.columns().iter().map(|c| c.name().to_string()).collect();
                rows = 0;
                println!("{}", cols.join("\t"));
                println!(
                    "{}",
                    cols.iter()
                        .map(|c| "-".repeat(c.len().max(4)))
                        .collect::<Vec<_>>()
                        .join("\t")
                );
            }
            Ok(Some(QueryItem::Row(r))) => {
                let vals: Vec<String> = (0..cols.len()).map(|i| cell(&r, i)).collect();
                println!("{}", vals.join("\t"));
                rows += 1;
            }
            Ok(None) => break,
            Err(e) => {
                print_error(&e);
                ok = false;
                break;
            }
        }
    }
    if !cols.is_empty() {
        println!(
            "\n({rows} row{} affected)",
            if rows == 1 { "" } else { "s" }
        );
    }
    Ok(ok)
}

fn print_error(e: &tiberius::error::Error) {
    match e {
        tiberius::error::Error::Server(t) => eprintln!(
            "Msg {}, Level {}, State {}, Server {}, Line {}\n{}",
            t.code(),
            t.class(),
            t.state(),
            t.server(),
            t.line(),
            t.message()
        ),
        other => eprintln!("{other}"),
    }
}

pub fn main(a: SqlArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = connect(&a).await?;
        let script = match (&a.query, &a.input) {
            (Some(q), _) => q.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?,
            (None, None) => {
                if let Some(q) = &a.interactive_query {
                    run_batch(&mut client, q).await?;
                }
                return interactive(&mut client).await;
            }
        };
        let mut failed = false;
        for b in split_go(&script) {
            if b.trim().is_empty() {
                continue;
            }
            if !run_batch(&mut client, &b).await? {
                failed = true;
                if a.fail_on_error {
                    break;
                }
            }
        }
        if failed && a.fail_on_error {
            std::process::exit(1);
        }
        anyhow::Ok(())
    })
}

/// sqlcmd's interactive mode: numbered prompts, a batch runs at GO, QUIT/EXIT leaves.
async fn interactive(client: &mut Client<tokio_util::compat::Compat<TcpStream>>) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut batch = String::new();
    let mut line_no = 1;
    loop {
        if tty {
            print!("{line_no}> ");
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            if !batch.trim().is_empty() {
                run_batch(client, &batch).await?;
            }
            return Ok(());
        }
        let t = line.trim();
        if t.eq_ignore_ascii_case("quit") || t.eq_ignore_ascii_case("exit") {
            return Ok(());
        }
        if t.eq_ignore_ascii_case("go") {
            run_batch(client, &batch).await?;
            batch.clear();
            line_no = 1;
            continue;
        }
        batch.push_str(&line);
        line_no += 1;
    }
}
