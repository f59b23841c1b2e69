//! JSON-lines inputs, plain or compressed, whole, cut short or damaged: prox-io reads them
//! without panicking, every error names the file and its line, and each way of reading the
//! same lines agrees.
//!
//! Input layout: one byte of settings, two bytes of a position, then the payload.
//! - settings % 4 == 0: the payload as a `.jsonl` file; read whole, in two byte ranges split at
//!   the position, and with a line limit; each line numbered and judged as the file says.
//! - 1 and 2: the payload gzip- (zstd-) compressed into `.jsonl.gz` (`.jsonl.zst`), the stream
//!   cut at the position: the same records as the plain file, or a prefix of them ended by a
//!   read error when the stream was cut.
//! - 3: the payload itself as a `.jsonl.gz` or `.jsonl.zst` file (bit 2 of the settings).
#![no_main]

use std::io::{Cursor, Write};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use prox_fuzz::{read_all, scratch_file, Item};
use prox_io::{open_records, open_slice, JsonlReader, Slice};

/// Enough for any input the fuzzer makes: readers here always end on their own.
const LIMIT: usize = usize::MAX;

fuzz_target!(|data: &[u8]| {
    let [settings, high, low, payload @ ..] = data else {
        return;
    };
    let position = usize::from(u16::from_be_bytes([*high, *low]));
    match settings % 4 {
        0 => plain(payload, position, usize::from(settings >> 2)),
        1 => cut_stream("cut.jsonl.gz", &gzip(payload), payload, position),
        2 => cut_stream("cut.jsonl.zst", &zstd(payload), payload, position),
        _ => {
            let name = if settings & 4 == 0 {
                "raw.jsonl.gz"
            } else {
                "raw.jsonl.zst"
            };
            let path = scratch_file(name, payload);
            if let Ok(records) = open_records(&path) {
                read_all(&path, records, LIMIT);
            }
        }
    }
});

/// The lines of `payload` as the reader splits them: after each `\n`, and a last one that does
/// not end in `\n` unless it is empty.
fn lines(payload: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = payload.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|last| last.is_empty()) {
        lines.pop();
    }
    lines
}

fn plain(payload: &[u8], position: usize, max_line_bytes: usize) {
    let path = scratch_file("plain.jsonl", payload);
    let whole = read(&path, Slice::Whole);
    assert!(!whole.iter().any(|item| matches!(item, Item::Failed { .. })));

    // One item per line that is not blank, numbered as the file's lines are.
    let lines = lines(payload);
    let numbered: Vec<u64> = (1..)
        .zip(&lines)
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(number, _)| number)
        .collect();
    let read_lines: Vec<u64> = whole
        .iter()
        .map(|item| match item {
            Item::Record { line, .. } | Item::Bad { line, .. } => *line,
            Item::Failed { .. } => unreachable!("checked above"),
        })
        .collect();
    assert_eq!(read_lines, numbered);

    // Two byte ranges, split anywhere, read the lines of the whole file once each.
    let split = (position % (payload.len() + 1)) as u64;
    let end = payload.len() as u64;
    let mut halves = read(
        &path,
        Slice::Bytes {
            start: 0,
            end: split,
        },
    );
    halves.extend(read(&path, Slice::Bytes { start: split, end }));
    assert_eq!(halves, whole);

    // With a line limit, longer lines become errors and the others read as before.
    let limit = 1 + max_line_bytes % 64;
    let reader = JsonlReader::new(&path, Cursor::new(payload.to_vec())).with_max_line_bytes(limit);
    let (limited, _) = read_all(&path, reader, LIMIT);
    let mut expected = Vec::new();
    let mut whole = whole.into_iter().peekable();
    for (number, line) in (1..).zip(&lines) {
        let same = whole.next_if(|item| matches!(item, Item::Record { line, .. } | Item::Bad { line, .. } if *line == number));
        // The reader counts an empty line as one byte (its line ending).
        if line.len().max(1) > limit {
            expected.push(Item::Bad {
                line: number,
                reason: format!(
                    "line of {} bytes is longer than the limit of {limit} bytes",
                    line.len().max(1)
                ),
            });
        } else if let Some(same) = same {
            expected.push(same);
        }
    }
    assert_eq!(limited, expected);
}

/// The items of one slice of a file, every one checked.
fn read(path: &Path, slice: Slice) -> Vec<Item> {
    let records = open_slice(path, &slice).expect("a plain JSON-lines file opens");
    read_all(path, records, LIMIT).0
}

fn cut_stream(name: &str, stream: &[u8], payload: &[u8], position: usize) {
    let cut = position.min(stream.len());
    let path = scratch_file(name, &stream[..cut]);
    let (items, _) = match open_records(&path) {
        Ok(records) => read_all(&path, records, LIMIT),
        Err(error) => {
            assert!(cut < stream.len(), "a whole stream fails to open: {error}");
            return;
        }
    };
    let plain_path = scratch_file("plain.jsonl", payload);
    let plain = read(&plain_path, Slice::Whole);
    // The records read are the plain file's (items name no file; `read_all` checked that).
    let records: Vec<Item> = items
        .iter()
        .filter(|item| !matches!(item, Item::Failed { .. }))
        .cloned()
        .collect();
    assert_eq!(
        records,
        plain[..records.len()],
        "records differ from the plain file's"
    );
    if cut == stream.len() {
        assert_eq!(items, plain);
    } else if cut > 0 {
        let Some(Item::Failed { line, .. }) = items.last() else {
            panic!(
                "a stream cut at byte {cut} of {} reads as complete",
                stream.len()
            );
        };
        let line = line.expect("a cut stream ends with a read error");
        assert!(line as usize <= lines(payload).len());
    }
}

fn gzip(payload: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(payload).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

fn zstd(payload: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(payload, 1).expect("writing to memory")
}
