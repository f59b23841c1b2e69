//! The input files of a run: the paths a user gives, expanded in an order that is the same on
//! every run.

use std::path::{Path, PathBuf};

use crate::Error;

/// Expands input paths into the files to read: a file stands for itself, a folder for every
/// file below it (hidden files and folders skipped). Files from folders are sorted so the order,
/// and so every document's position, is the same on every run; explicit files keep the order
/// given. A path that does not exist is an error.
pub fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for path in paths {
        let metadata =
            std::fs::metadata(path).map_err(|_| Error::Missing { path: path.clone() })?;
        if metadata.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Error> {
    let list_error = |source| Error::List {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map_err(list_error)?.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_expand_sorted_and_skip_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.jsonl", "a.jsonl", ".hidden.jsonl", "sub/c.jsonl"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let files = input_files(&[dir.path().to_owned()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| {
                f.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["a.jsonl", "b.jsonl", "sub/c.jsonl"]);
    }

    #[test]
    fn a_missing_input_is_an_error_naming_it() {
        let error = input_files(&[PathBuf::from("/no/such/file.jsonl")]).unwrap_err();
        assert!(error.to_string().contains("/no/such/file.jsonl"));
    }
}
