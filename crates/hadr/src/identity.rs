//! Byte identity of two copies of a database: every page equal, with page 1's change counter (bytes 24-27) and
//! version fields (92-99) masked, because SQLite rewrites those itself.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The first differing page (1-based), or None when the files are identical under the mask.
pub fn first_difference(a: &Path, b: &Path, page_size: usize) -> std::io::Result<Option<u32>> {
    let mut fa = File::open(a)?;
    let mut fb = File::open(b)?;
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(Some(0));
    }
    let mut pa = vec![0u8; page_size];
    let mut pb = vec![0u8; page_size];
    let mut pgno = 1u32;
    loop {
        let na = read_full(&mut fa, &mut pa)?;
        let nb = read_full(&mut fb, &mut pb)?;
        if na == 0 && nb == 0 {
            return Ok(None);
        }
        if pgno == 1 {
            for r in [24..28, 92..100] {
                pa[r.clone()].fill(0);
                pb[r].fill(0);
            }
        }
        if na != nb || pa[..na] != pb[..nb] {
            return Ok(Some(pgno));
        }
        pgno += 1;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A digest of every page of `db` as one durable snapshot shows it, with page 1's self-maintained fields masked
/// as above: equal digests at equal LSNs prove two replicas byte-identical. Returns (LSN, pages, SHA-256 hex).
pub fn page_checksum(db: &std::sync::Arc<engine::Database>) -> engine::Result<(u64, u32, String)> {
    let mut conn = db.connect()?;
    let lsn = conn.begin_read()?;
    let r = (|| -> engine::Result<(u32, String)> {
        let c = conn.sqlite();
        let mut st = c.prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
        let mut rows = st.query([])?;
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        let mut pages = 0u32;
        while let Some(r) = rows.next()? {
            let pgno: u32 = r.get(0)?;
            let mut data: Vec<u8> = r.get(1)?;
            if pgno == 1 {
                for m in [24..28, 92..100] {
                    if let Some(s) = data.get_mut(m) {
                        s.fill(0);
                    }
                }
            }
            h.update(&data);
            pages += 1;
        }
        let d = h.finish();
        Ok((
            pages,
            d.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        ))
    })();
    conn.end_read()?;
    let (pages, hex) = r?;
    Ok((lsn, pages, hex))
}
