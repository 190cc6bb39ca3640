//! Shared by the tests that drive real `milink serve` processes with `milink sql`.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `milink serve` process, killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `milink serve <args> --data-dir <dir>` with the sa password and API token in its environment.
pub fn serve(dir: &std::path::Path, args: &[&str], sa: &str, token: &str) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_milink"))
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .env("MSSQL_SA_PASSWORD", sa)
            .env("MILINK_API_TOKEN", token)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Wait until something accepts on 127.0.0.1:`port`; false if the process exited first.
pub fn wait_listening(p: &mut Proc, port: u16) -> bool {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if p.0.try_wait().unwrap().is_some() {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// `milink sql -S 127.0.0.1,<port> -U sa -b -Q <batch>`: Ok(stdout) or Err(stderr).
pub fn try_sql(port: u16, sa: &str, batch: &str) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_milink"))
        .args([
            "sql",
            "-S",
            &format!("127.0.0.1,{port}"),
            "-U",
            "sa",
            "-P",
            sa,
            "-b",
            "-Q",
            batch,
        ])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Like [`try_sql`], panicking with the server's error.
pub fn sql(port: u16, sa: &str, batch: &str) -> String {
    try_sql(port, sa, batch).unwrap_or_else(|e| panic!("{batch}\n{e}"))
}

/// Rows of the first result set `milink sql` printed (after the header and dashes), tab-separated.
pub fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}
