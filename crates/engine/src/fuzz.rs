//! Fuzz targets: every decoder of bytes that come from disk or the network. Each must return an error, never
//! panic. `cargo test` replays a deterministic mutation run; a cargo-fuzz harness can call the same functions.

use crate::log::format::{check_block, decode_block, Block, SegmentHeader};

pub fn log_block(data: &[u8]) {
    let _ = check_block(data);
    for ps in [512u32, 4096] {
        let _ = decode_block(data, ps);
    }
}

pub fn segment_header(data: &[u8]) {
    let _ = SegmentHeader::decode(data);
}

/// A backup file: header, records and trailer, through VERIFYONLY.
pub fn backup_file(data: &[u8]) {
    let Ok(dir) = tempfile_dir() else { return };
    let p = dir.join("fuzz.bak");
    if std::fs::write(&p, data).is_ok() {
        let _ = crate::backup::read_header(&p);
        let _ = crate::backup::verify(&p);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "milink-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Seeds: valid encodings the mutator starts from.
pub fn seed_block() -> Vec<u8> {
    let b = Block {
        lsn: 7,
        epoch: 1,
        commit_time_us: 1,
        db_pages: 3,
        page_size: 512,
        pgnos: vec![1, 3],
        data: vec![9; 1024],
    };
    b.encode(5, true).0
}

/// Deterministic xorshift mutations of `seed`: flips, truncations, length-field damage.
pub fn mutations(seed: &[u8], count: usize, mut state: u64) -> Vec<Vec<u8>> {
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let mut v = seed.to_vec();
            match next() % 4 {
                0 if !v.is_empty() => {
                    let n = (next() as usize) % v.len();
                    v.truncate(n);
                }
                1 => {
                    for _ in 0..1 + next() % 8 {
                        if !v.is_empty() {
                            let i = (next() as usize) % v.len();
                            v[i] ^= 1 << (next() % 8);
                        }
                    }
                }
                2 if v.len() > 8 => {
                    let i = (next() as usize) % (v.len() - 4);
                    v[i..i + 4].copy_from_slice(&(next() as u32).to_le_bytes());
                }
                _ => v = (0..next() % 200).map(|_| next() as u8).collect(),
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders_never_panic_on_mutated_input() {
        let block = seed_block();
        for m in mutations(&block, 3000, 0x9E37_79B9_7F4A_7C15) {
            log_block(&m);
        }
        let seg = SegmentHeader {
            version: 1,
            page_size: 4096,
            db_guid: [1; 16],
            first_lsn: 1,
            prev_crc: 0,
        }
        .encode();
        for m in mutations(&seg, 2000, 42) {
            segment_header(&m);
        }
    }

    #[test]
    fn backup_decoder_never_panics_on_mutated_files() {
        let dir = tempfile::tempdir().unwrap();
        let inst = crate::Instance::open(crate::InstanceConfig {
            name: "f".into(),
            data_dir: dir.path().join("i"),
            db_options: Default::default(),
        })
        .unwrap();
        inst.create_database("d").unwrap();
        let mut s = crate::Session::new(inst.clone());
        s.use_database(Some("d")).unwrap();
        s.query("CREATE TABLE t(x)", &[]).unwrap();
        let p = dir.path().join("d.bak");
        crate::backup::backup_database(&inst, "d", &p, &Default::default(), &mut |_| {}).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        backup_file(&bytes);
        for m in mutations(&bytes, 150, 7) {
            backup_file(&m);
        }
    }
}
