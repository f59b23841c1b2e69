//! `prox convert litgpt` end to end, as a real process, on the reference's litgpt fixtures.

#![allow(clippy::unwrap_used)] // a test fails loudly on any unexpected error

use std::process::{Command, Output};

fn prox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prox"))
        .args(args)
        .output()
        .expect("the prox binary runs")
}

#[test]
fn a_run_folder_converts_to_the_reference_folders_and_a_rerun_skips_them() {
    let fixture = prox_test::fixture("litgpt/tiny_LLaMA_test_mqa");
    let out = tempfile::tempdir().unwrap();
    let args = [
        "convert",
        "litgpt",
        "--input",
        fixture.to_str().unwrap(),
        "--output",
        out.path().to_str().unwrap(),
    ];
    let output = prox(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("lit_model.pth: no step in its name"),
        "{stderr}"
    );
    for folder in ["1B", "2B"] {
        for file in ["model.safetensors", "config.json"] {
            let ours = std::fs::read(out.path().join(folder).join(file)).unwrap();
            let reference =
                std::fs::read(fixture.join("expected").join(folder).join(file)).unwrap();
            assert!(
                ours == reference,
                "{folder}/{file} differs from the reference"
            );
        }
    }

    let again = prox(&args);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert_eq!(stdout.matches("already converted").count(), 2, "{stdout}");
}

#[test]
fn an_arch_the_checkpoint_contradicts_exits_2_naming_the_file_and_the_known_archs() {
    let fixture = prox_test::fixture("litgpt/tiny_LLaMA_test_gqa/iter-002000-ckpt.pth");
    let out = tempfile::tempdir().unwrap();
    let output = prox(&[
        "convert",
        "litgpt",
        "--input",
        fixture.to_str().unwrap(),
        "--output",
        out.path().join("1B").to_str().unwrap(),
        "--arch",
        "tiny_LLaMA_1b",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("iter-002000-ckpt.pth") && stderr.contains("n_head: 32 vs 4"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: architectures --arch knows by name: tiny_LLaMA_0_3b"),
        "{stderr}"
    );
    assert!(!out.path().join("1B").exists());
}
