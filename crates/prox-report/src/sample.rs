//! A seeded, stratified sample of documents.
//!
//! Each document gets a rank from a hash of the seed and its id; each stratum keeps the
//! documents of lowest rank ("bottom-k" sampling). The sample depends only on the seed and
//! the ids, not on the order rows are read in, and memory stays bounded by the sample size.

use std::collections::BTreeMap;

/// The `k` lowest-ranked items of each stratum, for strata of any key `K`.
#[derive(Debug, Clone)]
pub struct StratifiedSample<K: Ord, T> {
    seed: u64,
    capacity: usize,
    strata: BTreeMap<K, Stratum<T>>,
}

#[derive(Debug, Clone)]
struct Stratum<T> {
    seen: u64,
    /// Sorted by rank, at most `capacity` long.
    kept: Vec<(u64, T)>,
}

impl<K: Ord + Clone, T> StratifiedSample<K, T> {
    /// A sampler that keeps up to `capacity` items per stratum (enough for any quota).
    pub fn new(seed: u64, capacity: usize) -> Self {
        Self {
            seed,
            capacity,
            strata: BTreeMap::new(),
        }
    }

    /// Offers one item; `id` decides its rank.
    pub fn offer(&mut self, stratum: K, id: &str, item: impl FnOnce() -> T) {
        let rank = rank(self.seed, id);
        let entry = self.strata.entry(stratum).or_insert_with(|| Stratum {
            seen: 0,
            kept: Vec::new(),
        });
        entry.seen += 1;
        if self.capacity == 0 {
            return;
        }
        if entry.kept.len() == self.capacity
            && entry.kept.last().is_some_and(|(last, _)| rank >= *last)
        {
            return;
        }
        let at = entry.kept.partition_point(|(other, _)| *other <= rank);
        entry.kept.insert(at, (rank, item()));
        entry.kept.truncate(self.capacity);
    }

    /// Items seen per stratum.
    pub fn seen(&self) -> impl Iterator<Item = (&K, u64)> {
        self.strata.iter().map(|(key, stratum)| (key, stratum.seen))
    }

    /// Up to `total` items, shared out evenly over the strata (one from each in turn, strata
    /// in key order, until `total` are taken or every stratum is spent), grouped by stratum
    /// in key order, lowest rank first.
    pub fn take(self, total: usize) -> Vec<(K, T)> {
        let mut quotas = vec![0usize; self.strata.len()];
        let available: Vec<usize> = self.strata.values().map(|s| s.kept.len()).collect();
        let mut left = total;
        while left > 0 {
            let mut progressed = false;
            for (quota, available) in quotas.iter_mut().zip(&available) {
                if left > 0 && *quota < *available {
                    *quota += 1;
                    left -= 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        let mut taken = Vec::new();
        for ((key, stratum), quota) in self.strata.into_iter().zip(quotas) {
            taken.extend(
                stratum
                    .kept
                    .into_iter()
                    .take(quota)
                    .map(|(_, item)| (key.clone(), item)),
            );
        }
        taken
    }
}

/// A document's rank: FNV-1a of its id, mixed with the seed by SplitMix64's finalizer.
/// Written out so that ranks, and so samples, stay the same across versions of any crate.
fn rank(seed: u64, id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = hash ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: u64, ids: &[(&str, &str)], total: usize) -> Vec<(String, String)> {
        let mut sampler = StratifiedSample::new(seed, total);
        for (stratum, id) in ids {
            sampler.offer(stratum.to_string(), id, || id.to_string());
        }
        sampler.take(total)
    }

    #[test]
    fn every_stratum_gets_its_share_and_small_strata_give_theirs_to_the_others() {
        let mut ids: Vec<(&str, String)> = Vec::new();
        for i in 0..50 {
            ids.push(("a-big", format!("big-{i}")));
        }
        ids.push(("b-small", "small-0".into()));
        for i in 0..3 {
            ids.push(("c-mid", format!("mid-{i}")));
        }
        let ids: Vec<(&str, &str)> = ids.iter().map(|(s, id)| (*s, id.as_str())).collect();
        let taken = sample(7, &ids, 10);
        let count = |s: &str| taken.iter().filter(|(k, _)| k == s).count();
        assert_eq!(
            (count("a-big"), count("b-small"), count("c-mid")),
            (6, 1, 3)
        );
        assert_eq!(
            sample(7, &ids, 10),
            taken,
            "the same seed gives the same sample"
        );
        let mut reversed = ids.clone();
        reversed.reverse();
        assert_eq!(
            sample(7, &reversed, 10),
            taken,
            "the read order does not matter"
        );
        assert_ne!(
            sample(8, &ids, 10),
            taken,
            "another seed gives another sample"
        );
    }

    #[test]
    fn ranks_are_stable_across_versions() {
        // Computed independently (Python) from the definition.
        assert_eq!(rank(0, ""), 0xf52a15e9a9b5e89b);
        assert_eq!(rank(42, "doc-1"), 0x3ad45e34d313b16f);
    }
}
