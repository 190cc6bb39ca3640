//! Replays the checked-in fuzz corpus and a few thousand seeded random / mutated inputs
//! through every fuzz target: none may panic. Fast (well under 5 s) so it runs in CI.
use std::path::PathBuf;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut paths: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            out.push(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0, 0xFF, 0x7F, 0x80, 0xFE][rng.below(5)];
            }
            2 if !v.is_empty() => {
                let n = rng.below(v.len());
                v.truncate(n);
            }
            3 => {
                let i = rng.below(v.len() + 1);
                let b = rng.next() as u8;
                v.insert(i, b);
            }
            4 if v.len() > 2 => {
                let i = rng.below(v.len() - 1);
                let j = rng.below(v.len() - 1);
                v.swap(i, j);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                let extra: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                v.splice(i..i, extra);
            }
        }
    }
    v
}

#[test]
fn fuzz_targets_never_panic() {
    for (name, target) in tds::fuzz::TARGETS {
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "no corpus for fuzz target {name}");
        for s in &seeds {
            target(s);
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        for _ in 0..10_000 {
            let len = rng.below(300);
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            target(&data);
        }
        for i in 0..15_000 {
            let seed = &seeds[i % seeds.len()];
            let data = mutate(&mut rng, seed);
            target(&data);
        }
    }
}
