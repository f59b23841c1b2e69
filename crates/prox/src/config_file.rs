//! `--config FILE.yaml` for commands whose settings are all flags: the file's keys are the
//! flags' names (`doc-model: …` or `doc_model: …`), and flags on the command line win.

use std::path::Path;

use anyhow::{bail, Context};
use clap::{Args, FromArgMatches};
use serde_yaml_ng::Value;

/// The arguments of the subcommand `prox-NAME` with the YAML file's values under the command
/// line's: the file becomes flags placed before the command line's own, and a flag given twice
/// takes its last value (a repeatable flag keeps the file's values and adds the command line's).
pub fn with_config_file<T: Args + FromArgMatches>(
    name: &'static str,
    path: &Path,
) -> anyhow::Result<T> {
    let subcommand = name.strip_prefix("prox-").unwrap_or(name);
    let command_line = std::env::args().skip_while(|a| a != subcommand).skip(1);
    with_config_file_and(name, path, command_line)
}

/// [`with_config_file`] over `command_line`, the arguments that follow the subcommand's name.
pub fn with_config_file_and<T: Args + FromArgMatches>(
    name: &'static str,
    path: &Path,
    command_line: impl IntoIterator<Item = String>,
) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let mut argv = vec![name.to_owned()];
    argv.extend(file_flags(&text, path)?);
    let mut command_line = command_line.into_iter();
    while let Some(arg) = command_line.next() {
        if arg == "--config" {
            command_line.next();
        } else if !arg.starts_with("--config=") {
            argv.push(arg);
        }
    }
    let command = T::augment_args(clap::Command::new(name))
        .args_override_self(true)
        .no_binary_name(false);
    let matches = command
        .try_get_matches_from(&argv)
        .with_context(|| format!("in the config file {}", path.display()))?;
    Ok(T::from_arg_matches(&matches)?)
}

/// The YAML mapping `text` as command-line arguments: `key: value` is `--key value`, a list
/// gives the flag once per item, and a mapping in a list is one value `k=v,k=v`.
fn file_flags(text: &str, path: &Path) -> anyhow::Result<Vec<String>> {
    let values: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(text)
        .with_context(|| format!("{} is not a YAML mapping", path.display()))?;
    let mut argv = Vec::new();
    for (key, value) in values {
        let Some(key) = key.as_str() else {
            bail!("{}: every key must be a string", path.display());
        };
        let flag = format!("--{}", key.replace('_', "-"));
        if flag == "--config" {
            bail!("{}: a config file cannot name another one", path.display());
        }
        match value {
            Value::Bool(true) => argv.push(flag),
            Value::Bool(false) | Value::Null => {}
            Value::Sequence(items) => {
                for item in items {
                    argv.push(flag.clone());
                    argv.push(match item {
                        Value::Mapping(entry) => key_values(&entry, key, path)?,
                        item => scalar(&item, key, path)?,
                    });
                }
            }
            value => {
                argv.push(flag);
                argv.push(scalar(&value, key, path)?);
            }
        }
    }
    Ok(argv)
}

/// A mapping in the list `key` as one flag value, `k=v,k=v`.
fn key_values(entry: &serde_yaml_ng::Mapping, key: &str, path: &Path) -> anyhow::Result<String> {
    let mut pairs = Vec::with_capacity(entry.len());
    for (name, value) in entry {
        let (Some(name), Some(value)) = (name.as_str(), scalar_value(value)) else {
            bail!(
                "{}: the entries of `{key}` must map names to strings or numbers, nothing nested",
                path.display()
            );
        };
        // A comma would end the value early: `k=a,b` reads as `k=a` and a key `b`.
        if value.contains(',') {
            bail!(
                "{}: `{key}`: `{name}: {value}` holds a comma, which an entry's value cannot",
                path.display()
            );
        }
        pairs.push(format!("{name}={value}"));
    }
    Ok(pairs.join(","))
}

fn scalar(value: &Value, key: &str, path: &Path) -> anyhow::Result<String> {
    match scalar_value(value) {
        Some(value) => Ok(value),
        None => bail!(
            "{}: `{key}` must be a string, number or list (of those, or of mappings of those)",
            path.display()
        ),
    }
}

fn scalar_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(yaml: &str) -> anyhow::Result<Vec<String>> {
        file_flags(yaml, Path::new("run.yaml"))
    }

    #[test]
    fn a_mapping_in_a_list_is_one_flag_value_of_key_value_pairs() {
        let argv = flags("data: [{dir: a, prefix: p, weight: 3}, b]\nseq_len: 64\nresume: true\n")
            .unwrap();
        assert_eq!(
            argv,
            [
                "--data",
                "dir=a,prefix=p,weight=3",
                "--data",
                "b",
                "--seq-len",
                "64",
                "--resume"
            ]
        );
    }

    #[test]
    fn deeper_nesting_is_refused_naming_the_file_and_the_key() {
        for yaml in [
            "data: [{dir: a, prefix: [p, q]}]\n",
            "data: [[a, b]]\n",
            "data: {dir: a}\n",
            "data: [{dir: 'a,b'}]\n",
        ] {
            let err = flags(yaml).map(|_| ()).unwrap_err().to_string();
            assert!(
                err.contains("run.yaml") && err.contains("`data`"),
                "{yaml}: {err}"
            );
        }
    }
}
