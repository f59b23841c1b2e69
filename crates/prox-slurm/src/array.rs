//! Which array indices to submit: rank lists written the way `sbatch --array` reads them, and
//! the split of ranks into submissions that respect the cluster's `MaxArraySize`.

/// One `sbatch` submission of a job array: task `rank = offset + index` for each index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArraySubmission {
    /// Added to `SLURM_ARRAY_TASK_ID` to get the task's rank.
    pub offset: u32,
    /// The array indices, increasing, each below the cluster's `MaxArraySize`.
    pub indices: Vec<u32>,
}

impl ArraySubmission {
    /// The ranks this submission runs.
    pub fn ranks(&self) -> Vec<u32> {
        self.indices.iter().map(|i| self.offset + i).collect()
    }

    /// The `--array` value: `0-3,7`, with `%P` when at most `max_parallel` may run at once.
    pub fn array_spec(&self, max_parallel: Option<u32>) -> String {
        let mut spec = index_ranges(&self.indices);
        if let Some(parallel) = max_parallel {
            spec.push_str(&format!("%{parallel}"));
        }
        spec
    }
}

/// Splits `ranks` into submissions whose array indices are below `max_array_size` (Slurm
/// refuses an index of `MaxArraySize` or more): ranks `[k·M, (k+1)·M)` go into the
/// submission with offset `k·M`. Ranks are deduplicated and sorted.
pub fn split_ranks(ranks: &[u32], max_array_size: u32) -> Vec<ArraySubmission> {
    let block = max_array_size.max(1);
    let mut sorted = ranks.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut submissions: Vec<ArraySubmission> = Vec::new();
    for rank in sorted {
        let offset = rank - rank % block;
        match submissions.last_mut() {
            Some(last) if last.offset == offset => last.indices.push(rank - offset),
            _ => submissions.push(ArraySubmission {
                offset,
                indices: vec![rank - offset],
            }),
        }
    }
    submissions
}

/// Increasing, distinct indices as `sbatch --array` ranges: `[0, 1, 2, 5, 7, 8]` gives
/// `0-2,5,7-8`.
pub fn index_ranges(indices: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indices.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_join_consecutive_indices() {
        assert_eq!(index_ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(index_ranges(&[1, 4, 7]), "1,4,7");
        assert_eq!(index_ranges(&[3]), "3");
        assert_eq!(index_ranges(&[]), "");
    }

    #[test]
    fn a_small_array_is_one_submission_without_offset() {
        let submissions = split_ranks(&[0, 1, 2, 3], 1001);
        assert_eq!(
            submissions,
            vec![ArraySubmission {
                offset: 0,
                indices: vec![0, 1, 2, 3]
            }]
        );
        assert_eq!(submissions[0].array_spec(Some(2)), "0-3%2");
        assert_eq!(submissions[0].array_spec(None), "0-3");
    }

    #[test]
    fn ranks_past_max_array_size_go_into_offset_submissions() {
        let ranks: Vec<u32> = (0..2500).collect();
        let submissions = split_ranks(&ranks, 1000);
        assert_eq!(submissions.len(), 3);
        assert_eq!(submissions[1].offset, 1000);
        assert_eq!(submissions[2].offset, 2000);
        assert_eq!(submissions[2].array_spec(None), "0-499");
        let all: Vec<u32> = submissions.iter().flat_map(|s| s.ranks()).collect();
        assert_eq!(all, ranks);
    }

    #[test]
    fn a_resubmission_lists_only_the_missing_ranks_of_each_block() {
        let submissions = split_ranks(&[1007, 4, 1, 4, 2999], 1000);
        assert_eq!(submissions.len(), 3);
        assert_eq!(submissions[0].array_spec(None), "1,4");
        assert_eq!(
            (submissions[1].offset, submissions[1].array_spec(None)),
            (1000, "7".to_owned())
        );
        assert_eq!(submissions[2].ranks(), vec![2999]);
    }
}
