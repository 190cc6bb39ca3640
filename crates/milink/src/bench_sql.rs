//! `milink bench sql`: SQL endpoint round trips and fetch rates over loopback, with TLS off and on, against a raw
//! TCP echo round trip measured in the same run (the floor any request/response protocol pays on this machine).

use crate::sqlcmd::{connect, SqlArgs};
use anyhow::Result;
use futures_util::TryStreamExt;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "Bench!Passw0rd";

async fn echo_baseline(conns: usize, dur: Duration) -> Result<f64> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            s.set_nodelay(true).ok();
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let end = Instant::now() + dur;
            let mut n = 0u64;
            let mut b = [0u8; 32];
            while Instant::now() < end {
                s.write_all(&b[..32]).await?;
                s.read_exact(&mut b[..32]).await?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / dur.as_secs_f64())
}

async fn select1(args: &SqlArgs, conns: usize, dur: Duration) -> Result<f64> {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let a = args.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&a).await?;
            let end = Instant::now() + dur;
            let mut n = 0u64;
            while Instant::now() < end {
                let rows = c
                    .simple_query("SELECT 1")
                    .await?
                    .into_first_result()
                    .await?;
                anyhow::ensure!(rows.len() == 1);
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / dur.as_secs_f64())
}

async fn fetch(args: &SqlArgs, rows: u64) -> Result<f64> {
    let mut c = connect(args).await?;
    let t = Instant::now();
    let mut s = c.simple_query("SELECT id, k, v FROM big").await?;
    let mut n = 0u64;
    while let Some(item) = s.try_next().await? {
        if let tiberius::QueryItem::Row(_) = item {
            n += 1;
        }
    }
    anyhow::ensure!(n == rows, "fetched {n} rows, expected {rows}");
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

pub fn run(quick: bool) -> Result<()> {
    let dur = Duration::from_millis(if quick { 500 } else { 3000 });
    let rows: u64 = if quick { 10_000 } else { 100_000 };
    let tmp = tempfile::tempdir()?;
    let inst = engine::Instance::open(engine::InstanceConfig {
        name: "bench".into(),
        data_dir: tmp.path().join("data"),
        db_options: Default::default(),
    })?;
    sqlexec::logins::ensure_sa(&inst, Some(PASSWORD))
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let server = sqlexec::Server::new(inst.clone(), "bench", "localhost", false);
    {
        let mut c = sqlexec::Conn::new(server.clone(), 50, "sa")
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let mut out = Vec::new();
        c.execute_batch(
            &format!(
                "CREATE DATABASE bench; USE bench; CREATE TABLE big(id INT PRIMARY KEY, k INT NOT NULL, v NVARCHAR(100) NOT NULL);
                 BEGIN TRAN; DECLARE @i INT = 0; WHILE @i < {rows} BEGIN INSERT INTO big VALUES (@i, @i % 1000, N'row number ' + CAST(@i AS NVARCHAR(20))); SET @i += 1 END; COMMIT"
            ),
            &mut out,
        );
        if let Some(sqlexec::Out::Error(e)) =
            out.iter().find(|o| matches!(o, sqlexec::Out::Error(_)))
        {
            anyhow::bail!("setup: {}", e.message);
        }
    }
    let tls = tds::TlsIdentity::load_or_generate(tmp.path(), &["localhost".into()])?;
    let config = Arc::new(tds::ServerConfig::new("bench").with_tls(&tls)?);
    let handler = Arc::new(sqlexec::endpoint::Endpoint { server });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        tokio::spawn(tds::serve(l, handler, config));
        let base = SqlArgs {
            server: format!("127.0.0.1,{port}"),
            user: "sa".into(),
            password: Some(PASSWORD.into()),
            database: Some("bench".into()),
            query: None,
            input: None,
            fail_on_error: false,
            trust: true,
            encrypt: false,
            interactive_query: None,
        };
        let tls_on = SqlArgs { encrypt: true, ..base.clone() };
        let echo1 = echo_baseline(1, dur).await?;
        let echo16 = echo_baseline(16, dur).await?;
        let s1_off = select1(&base, 1, dur).await?;
        let s16_off = select1(&base, 16, dur).await?;
        let s1_on = select1(&tls_on, 1, dur).await?;
        let s16_on = select1(&tls_on, 16, dur).await?;
        let f_off = fetch(&base, rows).await?;
        let f_on = fetch(&tls_on, rows).await?;
        println!("milink bench sql (loopback; {} cores; {rows}-row fetch)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
        println!("{:<52} {:>12}", "figure", "value");
        println!("{:<52} {:>12.0}", "baseline: raw TCP echo round trips/s, 1 connection", echo1);
        println!("{:<52} {:>12.0}", "baseline: raw TCP echo round trips/s, 16 connections", echo16);
        println!("{:<52} {:>12.0}", "SELECT 1 round trips/s, 1 connection, TLS off", s1_off);
        println!("{:<52} {:>12.0}", "SELECT 1 round trips/s, 16 connections, TLS off", s16_off);
        println!("{:<52} {:>12.0}", "SELECT 1 round trips/s, 1 connection, TLS on", s1_on);
        println!("{:<52} {:>12.0}", "SELECT 1 round trips/s, 16 connections, TLS on", s16_on);
        println!("{:<52} {:>12.0}", "rows/s fetching the result, TLS off", f_off);
        println!("{:<52} {:>12.0}", "rows/s fetching the result, TLS on", f_on);
        println!("{:<52} {:>12.3}", "ratio SELECT 1 vs TCP echo, 1 connection", s1_off / echo1);
        println!("{:<52} {:>12.3}", "ratio SELECT 1 vs TCP echo, 16 connections", s16_off / echo16);
        println!("{:<52} {:>12.3}", "ratio TLS on vs off, SELECT 1 at 16 connections", s16_on / s16_off);
        println!("{:<52} {:>12.3}", "ratio TLS on vs off, fetch", f_on / f_off);
        println!(
            "{}",
            json!({
                "suite": "sql",
                "echo_rtt_per_s_1": echo1.round(), "echo_rtt_per_s_16": echo16.round(),
                "select1_per_s_1_tls_off": s1_off.round(), "select1_per_s_16_tls_off": s16_off.round(),
                "select1_per_s_1_tls_on": s1_on.round(), "select1_per_s_16_tls_on": s16_on.round(),
                "fetch_rows_per_s_tls_off": f_off.round(), "fetch_rows_per_s_tls_on": f_on.round(),
                "ratio_select1_vs_echo_1": (s1_off / echo1 * 1000.0).round() / 1000.0,
                "ratio_select1_vs_echo_16": (s16_off / echo16 * 1000.0).round() / 1000.0,
                "ratio_tls_on_vs_off_select1_16": (s16_on / s16_off * 1000.0).round() / 1000.0,
                "ratio_tls_on_vs_off_fetch": (f_on / f_off * 1000.0).round() / 1000.0,
                "rows": rows,
            })
        );
        anyhow::Ok(())
    })?;
    inst.shutdown().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
