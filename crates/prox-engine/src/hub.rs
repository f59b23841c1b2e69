//! Model names resolved the way the Hugging Face tools resolve them: a local folder or file,
//! or a hub id (`org/name`) found in the local hub cache.
//!
//! ProX-rs does not download: a hub id must already be in the cache (put there by
//! `huggingface-cli download org/name`, or any tool built on `huggingface_hub`). The cache is
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
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(dir);
    }
    if let Some(home) = var("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("huggingface").join("hub");
    }
    let home = var("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// Resolves `name` to a model folder or `.gguf` file: an existing local path as it is,
/// otherwise a hub id looked up in [`hub_cache_dir`] at `revision` (default `main`; a
/// branch or tag name under `refs/`, or a commit hash).
pub fn resolve_model(name: &str, revision: Option<&str>) -> Result<PathBuf> {
    resolve_model_in(name, revision, &hub_cache_dir())
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

/// `org/name` (or a bare legacy `name`), each part made of letters, digits, `-`, `_`, `.`.
fn is_hub_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && !p.contains("--")
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
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
