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
