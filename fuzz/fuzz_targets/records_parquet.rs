//! Any bytes as a Parquet file (a corrupt footer, bad row groups, truncated pages): prox-io
//! reads it without a panic escaping, every error names the file (and the last row read), and
//! reading the row groups one by one gives the rows of the whole file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prox_fuzz::{read_all, scratch_file, with_caught_panics_allowed, Item};
use prox_io::{open_records, open_slice, parquet_row_groups, Slice};

/// Rows read at most: a damaged footer can claim billions of them.
const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // The reader catches panics of the Parquet decoder and ends the file with an error naming
    // it; that is the contract checked here, so such a panic is not a finding.
    with_caught_panics_allowed(|| check(data));
});

fn check(data: &[u8]) {
    let path = scratch_file("input.parquet", data);
    let (whole, complete) = match open_records(&path) {
        Ok(records) => read_all(&path, records, LIMIT),
        Err(error) => {
            assert_eq!(error.path(), path);
            (Vec::new(), false)
        }
    };
    let groups = match parquet_row_groups(&path) {
        Ok(groups) => groups,
        Err(error) => {
            assert_eq!(error.path(), path);
            return;
        }
    };
    let mut by_group = Vec::new();
    for group in 0..groups.len().min(8) {
        let slice = Slice::RowGroups {
            start: group,
            end: group + 1,
        };
        match open_slice(&path, &slice) {
            Ok(records) => by_group.extend(read_all(&path, records, LIMIT).0),
            Err(error) => {
                assert_eq!(error.path(), path);
                return;
            }
        }
    }
    let failed = |items: &[Item]| items.iter().any(|i| matches!(i, Item::Failed { .. }));
    if complete && groups.len() <= 8 && !failed(&whole) && !failed(&by_group) {
        assert_eq!(
            by_group, whole,
            "row groups read one by one differ from the file"
        );
    }
}
