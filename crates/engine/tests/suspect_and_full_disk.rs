mod common;
use common::*;
use engine::backup::{self, BackupOptions};
use std::process::Command;

#[test]
fn corrupt_block_in_the_middle_marks_the_database_suspect() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = {
        let inst = open(dir.path());
        let db = inst.create_database("d").unwrap();
        let mut s = session(&inst, "d");
        exec(&mut s, "CREATE TABLE t(x)");
        for i in 0..20 {
            exec(&mut s, &format!("INSERT INTO t VALUES ({i})"));
        }
        let d = db.dir().to_path_buf();
        drop(s);
        drop(db);
        // Crash without a checkpoint so recovery must read the whole log.
        std::mem::forget(inst);
        d
    };
    let seg = std::fs::read_dir(db_dir.join("log"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    // The segment is preallocated with zeros: corrupt the middle of what was written.
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    let mid = end / 2;
    bytes[mid] ^= 0xA5;
    std::fs::write(&seg, &bytes).unwrap();
    let copy = tempfile::tempdir().unwrap();
    assert!(Command::new("cp")
        .args([
            "-a",
            &format!("{}/.", dir.path().display()),
            copy.path().to_str().unwrap()
        ])
        .status()
        .unwrap()
        .success());
    std::fs::remove_file(copy.path().join("milink.lock")).ok();
    let inst = open(copy.path());
    let e = inst.database("d").unwrap_err();
    assert_eq!(e.number, 926, "{e}");
    assert_eq!(inst.suspect_reason("d").unwrap().number, 824);
    let row = inst
        .databases()
        .into_iter()
        .find(|d| d.name == "d")
        .unwrap();
    assert_eq!(row.state_desc, "SUSPECT");
}

/// Mount a small tmpfs (needs root, as CI runs); None where mounting is not possible.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn new(size: &str) -> Option<SmallDisk> {
        let p = std::env::temp_dir().join(format!("milink-small-{}-{size}", std::process::id()));
        std::fs::create_dir_all(&p).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                p.to_str()?,
            ])
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        Some(SmallDisk(p))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-l", self.0.to_str().unwrap_or_default()])
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn small_disk(size: &str) -> Option<SmallDisk> {
    let d = SmallDisk::new(size);
    if d.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root and must be able to mount a tmpfs for the full-disk tests"
        );
        eprintln!("skipping: cannot mount a tmpfs here (not root)");
    }
    d
}

#[test]
fn full_disk_fails_cleanly_and_loses_nothing() {
    let Some(disk) = small_disk("4m") else { return };
    // Backups to a full disk: a clear error, no partial file, the database untouched.
    let dir = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    inst.create_database("big").unwrap();
    let mut s = session(&inst, "big");
    exec(&mut s, "CREATE TABLE t(v BLOB)");
    s.begin_tran();
    for _ in 0..2500 {
        exec(&mut s, "INSERT INTO t VALUES (randomblob(4000))");
    }
    s.commit_tran().unwrap();
    let target = disk.0.join("big.bak");
    let e = backup::backup_database(
        &inst,
        "big",
        &target,
        &BackupOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(e.number, 1105, "{e}");
    assert!(
        std::fs::read_dir(&disk.0).unwrap().next().is_none(),
        "no partial backup file is left behind"
    );
    assert_eq!(scalar_i64(&mut s, "SELECT count(*) FROM t"), 2500);
    drop(s);
    inst.shutdown().unwrap();
    drop(inst);

    // The data directory itself fills up: writes fail with an error, and every acknowledged commit survives.
    let Some(disk2) = small_disk("3m") else {
        return;
    };
    let data = disk2.0.join("data");
    let mut acked = 0i64;
    let err = {
        let inst = open(&data);
        inst.create_database("d").unwrap();
        let mut s = session(&inst, "d");
        exec(&mut s, "CREATE TABLE t(v BLOB)");
        let err = loop {
            match s.query("INSERT INTO t VALUES (randomblob(20000))", &[]) {
                Ok(_) => acked += 1,
                Err(e) => break e,
            }
            assert!(acked < 10_000);
        };
        let again = s.query("INSERT INTO t VALUES (1)", &[]).unwrap_err();
        assert!(matches!(again.number, 1105 | 9001 | 9002), "{again}");
        drop(s);
        std::mem::forget(inst);
        err
    };
    assert!(matches!(err.number, 1105 | 9001), "{err}");
    let copy = tempfile::tempdir().unwrap();
    assert!(Command::new("cp")
        .args([
            "-a",
            &format!("{}/.", data.display()),
            copy.path().to_str().unwrap()
        ])
        .status()
        .unwrap()
        .success());
    std::fs::remove_file(copy.path().join("milink.lock")).ok();
    let inst = open(copy.path());
    let mut s = session(&inst, "d");
    let n = scalar_i64(&mut s, "SELECT count(*) FROM t");
    assert!(n >= acked, "acknowledged {acked}, recovered {n}");
}
