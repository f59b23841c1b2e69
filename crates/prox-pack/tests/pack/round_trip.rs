//! Whatever is written reads back the same.

use proptest::prelude::*;
use prox_pack::{Dtype, Header, PackedReader, PackedWriter, Remainder};

fn dtype() -> impl Strategy<Value = Dtype> {
    prop::sample::select(vec![
        Dtype::U8,
        Dtype::I8,
        Dtype::I16,
        Dtype::U16,
        Dtype::I32,
        Dtype::I64,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn any_documents_split_in_chunks_read_back_the_same(
        dtype in dtype(),
        chunk_size in 1u64..64,
        separator in 0u32..100,
        documents in prop::collection::vec(prop::collection::vec(0u32..=u32::MAX, 0..24), 0..12),
        keep_remainder in any::<bool>(),
    ) {
        let max = dtype.max_token().unwrap().min(u64::from(u32::MAX)) as u32;
        let separator = separator.min(max);
        let documents: Vec<Vec<u32>> = documents
            .into_iter()
            .map(|doc| {
                doc.into_iter()
                    .map(|t| if max == u32::MAX { t } else { t % (max + 1) })
                    .collect()
            })
            .collect();
        let all: Vec<u32> = documents.concat();

        let dir = tempfile::tempdir().unwrap();
        let header = Header { dtype, chunk_size };
        let mut writer = PackedWriter::new(dir.path(), "p", header, separator).unwrap();
        for doc in &documents {
            writer.push(doc).unwrap();
        }
        let remainder = if keep_remainder { Remainder::Write } else { Remainder::Drop };
        let summary = writer.finish(remainder).unwrap();

        let chunk = chunk_size as usize;
        // As the reference: a chunk is written once a token past it arrives.
        let full = if all.is_empty() { 0 } else { (all.len() - 1) / chunk };
        let pending = all.len() - full * chunk;
        let files = full + usize::from(keep_remainder && pending > 0);
        prop_assert_eq!(summary.files.len(), files);
        prop_assert_eq!(summary.tokens_in, all.len() as u64);
        prop_assert_eq!(
            summary.tokens_written + summary.tokens_discarded,
            all.len() as u64
        );

        let read: Vec<i64> = PackedReader::open_dir(dir.path(), "p")
            .unwrap()
            .flat_map(|file| {
                let file = file.unwrap();
                assert_eq!(file.header(), header);
                assert_eq!(file.len(), chunk);
                file.tokens().unwrap().collect::<Vec<_>>()
            })
            .collect();
        let mut expected: Vec<i64> = all.iter().map(|&t| i64::from(t)).collect();
        if keep_remainder {
            expected.resize(files * chunk, i64::from(separator));
        } else {
            expected.truncate(full * chunk);
        }
        prop_assert_eq!(read, expected);
    }
}
