//! `prox convert litgpt` end to end, as a real process, on the reference's litgpt fixtures.

use crate::support::prox;

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
    let stderr = prox(args).success_stderr();
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

    let stdout = prox(args).success();
    assert_eq!(stdout.matches("already converted").count(), 2, "{stdout}");
}

#[test]
fn an_arch_the_checkpoint_contradicts_exits_2_naming_the_file_and_the_known_archs() {
    let fixture = prox_test::fixture("litgpt/tiny_LLaMA_test_gqa/iter-002000-ckpt.pth");
    let out = tempfile::tempdir().unwrap();
    let stderr = prox(["convert", "litgpt", "--arch", "tiny_LLaMA_1b", "--input"])
        .arg(&fixture)
        .arg("--output")
        .arg(out.path().join("1B"))
        .exit_code(2);
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
