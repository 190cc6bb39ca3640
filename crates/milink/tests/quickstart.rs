//! The README's first command: `milink quickstart` brings up both instances, runs the seed's set-up, shows
//! the link live, and a second run resumes the same set-up instead of failing.

use std::net::TcpListener;
use std::process::Command;

/// A base port with the four after it free too (the quickstart uses five consecutive ports).
fn free_run() -> u16 {
    for _ in 0..200 {
        let base = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if base > 65000 {
            continue;
        }
        if (0..5).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no run of five free ports");
}

fn quickstart(dir: &std::path::Path, base: u16) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_milink"))
        .args([
            "quickstart",
            "--seconds",
            "3",
            "--listen",
            &format!("127.0.0.1:{base}"),
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn quickstart_links_two_instances_and_resumes_on_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_run();
    let first = quickstart(dir.path(), base);
    for step in ["[2]", "[3]", "[5]", "[6]", "[7]", "[8]", "The link is up"] {
        assert!(first.contains(step), "missing {step}:\n{first}");
    }
    let status: Vec<&str> = first.lines().filter(|l| l.contains("CONNECTED")).collect();
    assert!(!status.is_empty(), "no live status:\n{first}");
    let orders = |line: &str| -> u64 {
        line.rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        status.iter().any(|l| orders(l) > 0),
        "nothing reached the managed instance:\n{first}"
    );
    // Again, on the same data folder: the same set-up, resumed.
    let base = free_run();
    let second = quickstart(dir.path(), base);
    assert!(second.contains("The link is up"), "{second}");
    assert!(second.lines().any(|l| l.contains("CONNECTED")), "{second}");
}
