//! Model names resolved the way the Hugging Face tools resolve them: a local folder or file,
//! or a hub id (`org/name`) found in the local hub cache, downloaded into it when absent.
//!
//! [`resolve_model`] downloads a hub id that is not in the cache (its config, tokenizer and
//! weight files, or its one `.gguf` file), unless `HF_HUB_OFFLINE=1`; offline and absent, the
//! error names the cache folder it looked in. A model put in the cache by
//! `huggingface-cli download org/name` or any tool built on `huggingface_hub` is found. The cache is
//! `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`, laid out as `huggingface_hub` writes it:
//!
//! ```text
//! models--org--name/
//!   refs/main                  the commit hash the `main` branch pointed to
//!   snapshots/<commit>/        the repository's files at that commit
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// The hub cache folder the environment designates (it need not exist).
pub fn hub_cache_dir() -> PathBuf {
    prox_hub::hub_cache_dir()
}

/// Resolves `name` to a model folder or `.gguf` file: an existing local path as it is,
/// otherwise a hub id looked up in [`hub_cache_dir`] at `revision` (default `main`; a
/// branch or tag name under `refs/`, or a commit hash), and downloaded there when it is
/// absent and `HF_HUB_OFFLINE` is not set.
pub fn resolve_model(name: &str, revision: Option<&str>) -> Result<PathBuf> {
    resolve_model_reporting(name, revision, &prox_hub::NoReporter)
}

/// [`resolve_model`], telling `reporter` how a download goes (a command draws it as a bar).
pub fn resolve_model_reporting(
    name: &str,
    revision: Option<&str>,
    reporter: &dyn prox_hub::Reporter,
) -> Result<PathBuf> {
    let cache = hub_cache_dir();
    match resolve_model_in(name, revision, &cache) {
        Err(Error::NotInHubCache {
            id,
            revision,
            looked_in,
            reason,
        }) if !offline() => {
            download_model_reporting(&id, &revision, &cache, reporter).map_err(|download| {
                Error::NotInHubCache {
                    id,
                    revision,
                    looked_in,
                    reason: format!("{reason}; downloading it failed: {download}"),
                }
            })
        }
        other => other,
    }
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"))
}

/// Downloads what loading a model needs into the hub cache, as `huggingface_hub` lays it out:
/// the JSON files, the tokenizer files and the safetensors weights of a Hugging Face model, or
/// the one `.gguf` file of a GGUF repository. Returns the snapshot folder (or `.gguf` file).
///
/// The hub is `HF_ENDPOINT`'s, with `HF_TOKEN`'s token; transfers resume and are verified
/// as `prox download`'s are (`prox-hub`).
pub fn download_model(
    name: &str,
    revision: &str,
    cache: &Path,
) -> std::result::Result<PathBuf, String> {
    download_model_reporting(name, revision, cache, &prox_hub::NoReporter)
}

/// [`download_model`], telling `reporter` how the transfers go.
pub fn download_model_reporting(
    name: &str,
    revision: &str,
    cache: &Path,
    reporter: &dyn prox_hub::Reporter,
) -> std::result::Result<PathBuf, String> {
    use prox_hub::{DownloadRequest, Hub, RepoType};

    let hub =
        Hub::new(&prox_hub::endpoint_from_env(), cache).with_token(prox_hub::token_from_env());
    let info = hub
        .repo_info(name, RepoType::Model, revision)
        .map_err(|e| format!("cannot list the repository: {e}"))?;
    let files: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let wanted = model_files(&files)?;
    let mut request = DownloadRequest::new(name, RepoType::Model);
    request.revision = revision.to_owned();
    request.include = wanted.clone();
    let download = hub
        .download_listed(&request, &info, reporter)
        .map_err(|e| e.to_string())?;
    if wanted[0].ends_with(".gguf") {
        return download
            .files
            .into_iter()
            .find(|f| f.file == wanted[0])
            .map(|f| f.path)
            .ok_or_else(|| format!("{} was not downloaded", wanted[0]));
    }
    Ok(download.folder)
}

/// The files of a repository that a model needs, the one that locates the model first.
fn model_files(files: &[String]) -> std::result::Result<Vec<String>, String> {
    let top_level = |f: &&String| !f.contains('/');
    if files.iter().any(|f| f == "config.json") {
        let mut wanted = vec!["config.json".to_owned()];
        wanted.extend(
            files
                .iter()
                .filter(top_level)
                .filter(|f| *f != "config.json")
                .filter(|f| {
                    f.ends_with(".safetensors")
                        || f.ends_with(".json")
                        || f.as_str() == "tokenizer.model"
                })
                .cloned(),
        );
        return Ok(wanted);
    }
    let ggufs: Vec<&String> = files
        .iter()
        .filter(top_level)
        .filter(|f| f.ends_with(".gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(vec![(*one).clone()]),
        [] => Err("the repository has neither config.json nor a .gguf file".to_owned()),
        _ => Err(format!(
            "the repository has several .gguf files ({}): download the one to use and pass its path",
            ggufs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// [`resolve_model`] with an explicit cache folder.
pub fn resolve_model_in(name: &str, revision: Option<&str>, cache: &Path) -> Result<PathBuf> {
    let local = Path::new(name);
    if local.exists() {
        return Ok(local.to_path_buf());
    }
    if !is_hub_id(name) {
        return Err(Error::NotAModel {
            path: local.to_path_buf(),
            reason: "no such file or folder (and not a hub id of the form `org/name`)".to_owned(),
        });
    }
    let revision = revision.unwrap_or(DEFAULT_REVISION);
    let repo = cache.join(format!("models--{}", name.replace('/', "--")));
    let not_cached = |looked_in: PathBuf, reason: String| Error::NotInHubCache {
        id: name.to_owned(),
        revision: revision.to_owned(),
        looked_in,
        reason,
    };
    if !repo.is_dir() {
        return Err(not_cached(repo, "no such folder".to_owned()));
    }
    let snapshot = snapshot_dir(&repo, revision).ok_or_else(|| {
        not_cached(
            repo.join("refs").join(revision),
            format!("no ref `{revision}` and no snapshot of that name"),
        )
    })?;
    model_in_snapshot(&snapshot).map_err(|reason| not_cached(snapshot, reason))
}

/// `org/name` (or a bare legacy `name`), as the hub client accepts it.
fn is_hub_id(name: &str) -> bool {
    prox_hub::Hub::is_repo_id(name)
}

/// The snapshot folder of `revision`: the commit `refs/<revision>` names, or a snapshot
/// named by the revision itself (a commit hash).
fn snapshot_dir(repo: &Path, revision: &str) -> Option<PathBuf> {
    let snapshots = repo.join("snapshots");
    let reference = repo.join("refs").join(revision);
    if let Ok(commit) = std::fs::read_to_string(&reference) {
        let dir = snapshots.join(commit.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
    let dir = snapshots.join(revision);
    (!revision.contains('/') && dir.is_dir()).then_some(dir)
}

/// A snapshot holds a Hugging Face folder (`config.json`) or one `.gguf` file.
fn model_in_snapshot(snapshot: &Path) -> std::result::Result<PathBuf, String> {
    if snapshot.join("config.json").is_file() {
        return Ok(snapshot.to_path_buf());
    }
    let entries = std::fs::read_dir(snapshot).map_err(|e| format!("cannot list it: {e}"))?;
    let mut ggufs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    ggufs.sort();
    match ggufs.len() {
        1 => Ok(ggufs.remove(0)),
        0 => Err("the snapshot has neither config.json nor a .gguf file".to_owned()),
        _ => Err(format!(
            "the snapshot has several .gguf files ({}): pass the one to use as --model",
            ggufs
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_takes_what_loading_needs_and_nothing_else() {
        let files: Vec<String> = [
            "README.md",
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.model",
            "tokenizer_config.json",
            "pytorch_model.bin",
            "onnx/model.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            model_files(&files).unwrap(),
            [
                "config.json",
                "generation_config.json",
                "model.safetensors",
                "tokenizer.model",
                "tokenizer_config.json"
            ]
        );
        let gguf = vec!["README.md".to_owned(), "m.Q8_0.gguf".to_owned()];
        assert_eq!(model_files(&gguf).unwrap(), ["m.Q8_0.gguf"]);
        let two = vec!["a.gguf".to_owned(), "b.gguf".to_owned()];
        assert!(model_files(&two).unwrap_err().contains("a.gguf, b.gguf"));
    }

    #[test]
    fn hub_ids_are_org_and_name() {
        assert!(is_hub_id("gair-prox/web-doc-refining-lm"));
        assert!(is_hub_id("gpt2"));
        assert!(is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(!is_hub_id("a/b/c"));
        assert!(!is_hub_id("../model"));
        assert!(!is_hub_id("/abs/path"));
        assert!(!is_hub_id("org/na me"));
        assert!(!is_hub_id("org--x/name"));
    }
}
