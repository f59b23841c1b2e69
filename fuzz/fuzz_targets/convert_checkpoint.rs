//! Untrusted checkpoints for `prox convert`: any bytes as a pickle, or as a PyTorch zip
//! archive, are read without a panic or anything executed, errors name the file (and, for a
//! pickle, a byte inside it), and every tensor of an archive that opens reads to its size.
//!
//! Input layout: one byte choosing the pickle (even) or the archive (odd), then the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prox_convert::pickle;
use prox_convert::Checkpoint;
use prox_fuzz::{error_chain, scratch_file};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else {
        return;
    };
    if choice % 2 == 0 {
        if let Err(error) = pickle::parse(bytes) {
            assert!(error.position <= bytes.len(), "{error}");
        }
        return;
    }
    let path = scratch_file("lit_model.pth", bytes);
    let name = path.display().to_string();
    let checkpoint = match Checkpoint::open(&path) {
        Ok(checkpoint) => checkpoint,
        Err(error) => {
            let message = error_chain(&error);
            assert!(
                message.starts_with(&name),
                "{message:?} does not name the file"
            );
            return;
        }
    };
    for (tensor_name, tensor) in checkpoint.tensors() {
        match checkpoint.read_tensor(tensor_name, tensor) {
            Ok(tensor_bytes) => {
                let size = tensor.numel() * tensor.storage.dtype.size() as u64;
                assert_eq!(tensor_bytes.len() as u64, size, "{tensor_name}");
            }
            Err(error) => {
                let message = error_chain(&error);
                assert!(
                    message.starts_with(&name),
                    "{message:?} does not name the file"
                );
            }
        }
    }
});
