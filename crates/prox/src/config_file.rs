//! `--config FILE.yaml` for commands whose settings are all flags: the file's keys are the
//! flags' names (`doc-model: …` or `doc_model: …`), and flags on the command line win.

use std::path::Path;

use anyhow::{bail, Context};
use clap::{Args, FromArgMatches};
use serde_yaml_ng::Value;

/// The arguments of the subcommand `prox-NAME` with the YAML file's values under the command
/// line's: the file becomes flags placed before the command line's own, and a flag given twice
/// takes its last value.
pub fn with_config_file<T: Args + FromArgMatches>(
    name: &'static str,
    path: &Path,
) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let values: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not a YAML mapping", path.display()))?;
    let subcommand = name.strip_prefix("prox-").unwrap_or(name);
    let mut argv = vec![name.to_owned()];
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
                argv.push(flag);
                for item in items {
                    argv.push(scalar(&item, key, path)?);
                }
            }
            value => {
                argv.push(flag);
                argv.push(scalar(&value, key, path)?);
            }
        }
    }
    // The command line's own arguments, after the subcommand, minus --config and its value.
    let mut command_line = std::env::args().skip_while(|a| a != subcommand).skip(1);
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

fn scalar(value: &Value, key: &str, path: &Path) -> anyhow::Result<String> {
    Ok(match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => bail!(
            "{}: `{key}` must be a string, number or list",
            path.display()
        ),
    })
}
