//! Keys and values, made before the run so the load loop never formats.
//!
//! Key `i` is etcd's benchmark key: `i` as a zig-zag varint at the start of a
//! zeroed buffer of `--key-size` bytes (so 8-byte keys of a 1-key space are
//! eight zero bytes, as with etcd's tool). Key spaces up to [`TABLE_LIMIT`]
//! keys are encoded once into a table; larger ones are encoded on the fly
//! (one small allocation, which the request needs anyway).

/// Largest key space kept as a pre-built table.
pub const TABLE_LIMIT: u64 = 1 << 20;

pub struct KeySpace {
    size: u64,
    key_size: usize,
    table: Vec<Vec<u8>>,
}

impl KeySpace {
    pub fn new(size: u64, key_size: usize) -> KeySpace {
        let size = size.max(1);
        let table = if size <= TABLE_LIMIT { (0..size).map(|i| encode(i, key_size)).collect() } else { Vec::new() };
        KeySpace { size, key_size, table }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether every key index fits in `--key-size` bytes (otherwise distinct
    /// indexes can share a key).
    pub fn fits(&self) -> bool {
        varint_len(self.size - 1) <= self.key_size
    }

    /// Key number `i % size`.
    #[inline]
    pub fn key(&self, i: u64) -> Vec<u8> {
        let i = i % self.size;
        match self.table.get(i as usize) {
            Some(k) => k.clone(),
            None => encode(i, self.key_size),
        }
    }
}

fn zigzag(i: u64) -> u64 {
    let v = i as i64;
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint_len(i: u64) -> usize {
    let mut v = zigzag(i);
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// `i` as a zig-zag varint (Go's `binary.PutVarint`) in `key_size` zeroed bytes,
/// truncated if it does not fit.
pub fn encode(i: u64, key_size: usize) -> Vec<u8> {
    let mut key = vec![0u8; key_size];
    let mut v = zigzag(i);
    let mut at = 0;
    loop {
        let byte = if v >= 0x80 { (v as u8) | 0x80 } else { v as u8 };
        if at < key.len() {
            key[at] = byte;
        }
        at += 1;
        if v < 0x80 {
            break;
        }
        v >>= 7;
    }
    key
}

/// A small, fast pseudo-random generator (SplitMix64): one per worker, so
/// picking a random key costs a few arithmetic instructions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(salt: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(t ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the tiny modulo bias does not matter here).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_go_put_varint() {
        assert_eq!(encode(0, 8), vec![0; 8]);
        assert_eq!(encode(1, 4), vec![2, 0, 0, 0]);
        assert_eq!(encode(64, 4), vec![0x80, 0x01, 0, 0]);
        assert_eq!(encode(64, 1), vec![0x80]);
        let ks = KeySpace::new(100, 8);
        assert_eq!(ks.key(101), encode(1, 8));
        assert!(ks.fits());
        assert!(!KeySpace::new(100_000, 2).fits());
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
