//! What the subcommands' tests share: the `prox` command line, the tiny fixture model, the
//! files a run reads and writes, and a `prox serve` process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use prox_test::command::{read_rows, TestCommand};
pub use prox_test::json::read as read_json;
use serde_json::Value;

/// The `prox` binary Cargo built for these tests.
pub const PROX: &str = env!("CARGO_BIN_EXE_prox");

/// The Hugging Face variables that point a process at a cache, a token, an endpoint or
/// offline mode: a test sets the ones it means, never the caller's.
const HUB_ENV: [&str; 9] = [
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "XDG_CACHE_HOME",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
];

/// `prox ARGS`, logging warnings and errors only, so that its stderr holds what a test
/// looks for.
pub fn prox<I, S>(args: I) -> TestCommand
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    TestCommand::new(PROX).args(args).env("PROX_LOG", "warn")
}

/// [`prox`] with none of the caller's Hugging Face settings (cache, token, endpoint,
/// offline mode).
pub fn prox_without_hub_env(args: &[&str]) -> TestCommand {
    HUB_ENV
        .iter()
        .fold(prox(args), |command, var| command.env_remove(var))
}

/// The `prox apply` arguments that run the chunk programs on `doc_content`, where the web
/// sample and a refined run's rows keep the text the programs were written for.
pub const CHUNK_STAGE: [&str; 4] = ["--stage", "chunk", "--text-field", "doc_content"];

/// `prox apply ARGS --input INPUT --output OUTPUT`.
pub fn apply(args: &[&str], input: &Path, output: &Path) -> TestCommand {
    prox(["apply"])
        .args(args)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
}

/// The path as a command-line argument (temporary and fixture paths are UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The tiny random Llama of the fixtures, a Hugging Face model folder.
pub fn tiny_llama() -> PathBuf {
    prox_test::fixture("tiny-llama")
}

/// The reference's greedy generations of the tiny model (`tiny-llama/golden.json`), one
/// object a prompt.
pub fn tiny_llama_golden_cases() -> Vec<Value> {
    let golden = read_json(prox_test::fixture("tiny-llama/golden.json"));
    golden["cases"]
        .as_array()
        .expect("golden.json has a `cases` array")
        .clone()
}

/// The web page sample of the README's quick start.
pub fn web_sample() -> PathBuf {
    prox_test::workspace_root().join("examples/web-sample.jsonl")
}

/// Writes `rows` to `path` as JSON lines.
pub fn write_rows(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|row| format!("{row}\n")).collect();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Every row of one kind of part of a run folder (`output`, `dropped`, `failures`) in the
/// run-folder contract's order (by task, then by part); none when the folder is not there.
pub fn run_rows(run: &Path, kind: &str) -> Vec<Value> {
    let dir = run.join(kind);
    if !dir.exists() {
        return Vec::new();
    }
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|part| prox_io::open_records(part).unwrap())
        .map(|record| Value::Object(record.unwrap().unwrap().fields))
        .collect()
}

/// A running `prox serve`, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// Where it listens, as it printed it.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `prox serve ARGS` and waits (a minute at most) for the line that says where it
    /// listens.
    pub fn start(args: &[&str]) -> ServerProcess {
        let mut child = prox(["serve"])
            .args(args)
            .spawn(Stdio::piped(), Stdio::inherit());
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("prox serve says where it listens");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        ServerProcess { child, addr }
    }

    /// The base URL of the server.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends the signal `name` (`TERM`, `KILL`) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its status code.
    pub fn wait(mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(started.elapsed() < limit, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
