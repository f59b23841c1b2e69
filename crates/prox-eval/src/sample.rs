//! lighteval's `--max_samples` selection: the documents in the split's row order, shuffled by
//! CPython's `random.Random(42).shuffle`, the first `max_samples` kept.
//!
//! CPython's generator is MT19937 seeded with `init_by_array([seed])`; `shuffle` swaps each
//! index `i` from the last down to 1 with `j = _randbelow(i + 1)`, which draws
//! `k = (i + 1).bit_length()` bits (`genrand_uint32() >> (32 - k)`) until the value is below
//! `i + 1`.

/// The seed lighteval uses for `max_samples`.
pub const LIGHTEVAL_SEED: u32 = 42;

/// CPython's Mersenne Twister (`random.Random`), enough of it for `shuffle`.
#[derive(Debug, Clone)]
pub struct PythonRandom {
    state: [u32; 624],
    index: usize,
}

impl PythonRandom {
    /// `random.Random(seed)` for a seed that fits in 32 bits (`init_by_array([seed])`).
    pub fn new(seed: u32) -> Self {
        let mut rng = PythonRandom {
            state: [0; 624],
            index: 624,
        };
        rng.init_genrand(19_650_218);
        let key = [seed];
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624.max(key.len()) {
            let prev = rng.state[i - 1] ^ (rng.state[i - 1] >> 30);
            rng.state[i] = (rng.state[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                rng.state[0] = rng.state[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            let prev = rng.state[i - 1] ^ (rng.state[i - 1] >> 30);
            rng.state[i] = (rng.state[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                rng.state[0] = rng.state[623];
                i = 1;
            }
        }
        rng.state[0] = 0x8000_0000;
        rng
    }

    fn init_genrand(&mut self, seed: u32) {
        self.state[0] = seed;
        for i in 1..624 {
            let prev = self.state[i - 1] ^ (self.state[i - 1] >> 30);
            self.state[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
        self.index = 624;
    }

    /// The next 32 random bits (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for k in 0..624 {
            let y = (self.state[k] & UPPER) | (self.state[(k + 1) % 624] & LOWER);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.state[k] = self.state[(k + 397) % 624] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// `_randbelow(n)` for `0 < n < 2^32`: a uniform value in `0..n`.
    pub fn below(&mut self, n: u32) -> u32 {
        let bits = 32 - n.leading_zeros();
        loop {
            let r = self.next_u32() >> (32 - bits);
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle(items)`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // A split has far fewer than 2^32 rows.
            let j = self.below((i + 1) as u32) as usize;
            items.swap(i, j);
        }
    }
}

/// The row indices lighteval evaluates for a split of `n` rows: all of them in order without
/// a limit, else the first `max_samples` of the seed-42 shuffle.
pub fn sample_indices(n: usize, max_samples: Option<usize>) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..n).collect();
    if let Some(max) = max_samples {
        PythonRandom::new(LIGHTEVAL_SEED).shuffle(&mut indices);
        indices.truncate(max);
    }
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_matches_cpython() {
        // random.Random(42).getrandbits(32), three times.
        let mut rng = PythonRandom::new(42);
        assert_eq!(
            [rng.next_u32(), rng.next_u32(), rng.next_u32()],
            [2_746_317_213, 478_163_327, 107_420_369]
        );
    }

    #[test]
    fn shuffling_five_matches_cpython() {
        assert_eq!(sample_indices(5, Some(1000)), vec![3, 1, 2, 4, 0]);
        assert_eq!(sample_indices(3, None), vec![0, 1, 2]);
    }
}
