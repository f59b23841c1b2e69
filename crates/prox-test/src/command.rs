//! Running a binary under test as a real process, and reading the JSON lines it wrote.
//!
//! [`TestCommand`] wraps [`std::process::Command`]: build it as usual, then run it with the
//! outcome the test expects. A run that ends otherwise panics with everything needed to see
//! why: the command line (with the environment it changed), the exit status, stdout and stderr.
//!
//! ```no_run
//! use prox_test::command::TestCommand;
//!
//! let stdout = TestCommand::new("prox")
//!     .args(["apply", "--stage", "chunk"])
//!     .env("PROX_LOG", "warn")
//!     .success();
//! let stderr = TestCommand::new("prox").arg("no-such-command").exit_code(2);
//! ```

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use serde_json::Value;

/// A command line to run as a process under test; see the [module documentation](self).
pub struct TestCommand {
    command: Command,
    stdin: Option<Vec<u8>>,
}

impl TestCommand {
    /// The command `program`, with no arguments, in the test's environment and folder.
    pub fn new(program: impl AsRef<OsStr>) -> TestCommand {
        TestCommand {
            command: Command::new(program),
            stdin: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> TestCommand {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable of the process.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> TestCommand {
        self.command.env(key, value);
        self
    }

    /// Removes a variable the test's own environment would pass on.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> TestCommand {
        self.command.env_remove(key);
        self
    }

    /// Runs the process in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> TestCommand {
        self.command.current_dir(dir);
        self
    }

    /// Gives the process `bytes` on its standard input (else it reads an empty one).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> TestCommand {
        self.stdin = Some(bytes.into());
        self
    }

    /// Runs the process to its end and returns what it did, whatever its exit status; panics
    /// only when it cannot be started.
    pub fn run(&mut self) -> Output {
        let mut child = self.start(Stdio::piped(), Stdio::piped());
        // Written from another thread: a process that writes much before it reads all of its
        // input would otherwise wait on a full stdout pipe while the test waits on its stdin.
        let writer = child
            .stdin
            .take()
            .zip(self.stdin.clone())
            .map(|(mut stdin, bytes)| {
                // A process that exits without reading all of its input closes the pipe: that is
                // its business, and its exit status tells the test what happened.
                std::thread::spawn(move || drop(stdin.write_all(&bytes)))
            });
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for `{self}`: {e}"));
        if let Some(writer) = writer {
            writer.join().expect("the stdin writer does not panic");
        }
        output
    }

    /// Runs the process, which must exit with status 0; its stdout.
    pub fn success(&mut self) -> String {
        let output = self.run_expecting(ExitStatus::success, "to succeed");
        text(output.stdout, "stdout", self)
    }

    /// Runs the process, which must exit with status 0; its stderr, for the logs and warnings
    /// of a run that went through.
    pub fn success_stderr(&mut self) -> String {
        let output = self.run_expecting(ExitStatus::success, "to succeed");
        text(output.stderr, "stderr", self)
    }

    /// Runs the process, which must exit with a status other than 0; its stderr.
    pub fn failure(&mut self) -> String {
        let failed = |status: &ExitStatus| status.code().is_some_and(|code| code != 0);
        let output = self.run_expecting(failed, "to exit with a status other than 0");
        text(output.stderr, "stderr", self)
    }

    /// Runs the process, which must exit with status `code`; its stderr.
    pub fn exit_code(&mut self, code: i32) -> String {
        let expected = format!("to exit with status {code}");
        let output = self.run_expecting(|status| status.code() == Some(code), &expected);
        text(output.stderr, "stderr", self)
    }

    /// Starts the process with its stdout and stderr where the test wants them, for a process
    /// the test stops itself or talks to while it runs.
    pub fn spawn(&mut self, stdout: Stdio, stderr: Stdio) -> Child {
        assert!(
            self.stdin.is_none(),
            "`{self}`: a spawned process gets no stdin bytes; write to its stdin instead"
        );
        self.start(stdout, stderr)
    }

    fn start(&mut self, stdout: Stdio, stderr: Stdio) -> Child {
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let child = self
            .command
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn();
        child.unwrap_or_else(|e| panic!("cannot start `{self}`: {e}"))
    }

    /// [`run`](Self::run), panicking with the whole story when the exit status fails `held`.
    fn run_expecting(&mut self, held: impl FnOnce(&ExitStatus) -> bool, what: &str) -> Output {
        let output = self.run();
        assert!(
            held(&output.status),
            "expected `{self}` {what}, it exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

/// The command line as a shell would take it: `env` with the variables it removes and sets,
/// then the program and its arguments, each quoted when it needs to be.
impl fmt::Display for TestCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (set, removed): (Vec<_>, Vec<_>) = self
            .command
            .get_envs()
            .partition(|(_, value)| value.is_some());
        let mut words = Vec::new();
        if !set.is_empty() || !removed.is_empty() {
            words.push("env".to_owned());
        }
        // `env` takes its options before the assignments.
        for (key, _) in removed {
            words.push(format!("-u {}", quoted(key)));
        }
        for (key, value) in set {
            let value = value.map(quoted).unwrap_or_default();
            words.push(format!("{}={value}", quoted(key)));
        }
        words.push(quoted(self.command.get_program()));
        words.extend(self.command.get_args().map(quoted));
        f.write_str(&words.join(" "))
    }
}

/// `word` as one shell word.
fn quoted(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn text(bytes: Vec<u8>, stream: &str, command: &TestCommand) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("the {stream} of `{command}` is not UTF-8: {e}"))
}

/// Every row of a JSON-lines file a command wrote, parsed.
///
/// Panics naming the file and line when a row is not JSON, and on a blank line between rows:
/// a writer of JSON lines writes none, whereas [`read_jsonl`](crate::read_jsonl) lets a
/// hand-written fixture have them.
pub fn read_rows(path: impl AsRef<Path>) -> Vec<Value> {
    let path = path.as_ref();
    let rows = crate::read_jsonl(path);
    for (expected, (line, _)) in (1..).zip(&rows) {
        assert_eq!(
            *line,
            expected,
            "{}:{expected}: a blank line among the rows",
            path.display()
        );
    }
    rows.into_iter().map(|(_, row)| row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> TestCommand {
        TestCommand::new("sh").args(["-c", script])
    }

    fn panic_message(run: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let payload = std::panic::catch_unwind(run).expect_err("the run panics");
        payload
            .downcast_ref::<String>()
            .cloned()
            .expect("a formatted panic message")
    }

    #[test]
    fn success_returns_stdout_and_sees_the_environment_and_folder_it_was_given() {
        let dir = std::env::temp_dir();
        let stdout = sh("printf '%s %s %s' \"$GREETING\" \"${HOME:-unset}\" \"$(pwd)\"")
            .env("GREETING", "hello")
            .env_remove("HOME")
            .current_dir(&dir)
            .success();
        let here = dir.canonicalize().expect("the temp folder exists");
        assert_eq!(stdout, format!("hello unset {}", here.display()));
    }

    #[test]
    fn stdin_bytes_reach_the_process() {
        let stdout = TestCommand::new("cat")
            .stdin(&b"line one\nline two\n"[..])
            .success();
        assert_eq!(stdout, "line one\nline two\n");
        // Without stdin bytes the process reads an empty input rather than the test's own.
        assert_eq!(TestCommand::new("cat").success(), "");
    }

    #[test]
    fn a_failed_success_explains_itself_with_the_command_line_status_and_output() {
        let message = panic_message(|| {
            sh("echo out; echo err >&2; exit 3")
                .env("PROX_LOG", "warn")
                .env_remove("HF_TOKEN")
                .success();
        });
        assert!(
            message.starts_with(
                "expected `env -u HF_TOKEN PROX_LOG=warn sh -c 'echo out; echo err >&2; exit 3'` to succeed"
            ),
            "{message}"
        );
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(
            message.contains("--- stdout\nout\n") && message.contains("--- stderr\nerr\n"),
            "{message}"
        );
    }

    #[test]
    fn exit_code_and_failure_return_stderr_and_refuse_other_statuses() {
        assert_eq!(sh("echo why >&2; exit 2").exit_code(2), "why\n");
        assert_eq!(sh("echo why >&2; exit 1").failure(), "why\n");
        assert_eq!(sh("echo log >&2").success_stderr(), "log\n");
        let message = panic_message(|| {
            sh("exit 1").exit_code(2);
        });
        assert!(message.contains("to exit with status 2"), "{message}");
        let message = panic_message(|| {
            sh("true").failure();
        });
        assert!(message.contains("other than 0"), "{message}");
        // Killed by a signal is no exit status at all: not the failure a test asks for.
        let message = panic_message(|| {
            sh("kill -9 $$").failure();
        });
        assert!(message.contains("signal: 9"), "{message}");
    }

    #[test]
    fn run_returns_the_output_whatever_the_status() {
        let output = sh("echo partial; exit 1").run();
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(output.stdout, b"partial\n");
    }

    #[test]
    fn read_rows_parses_every_line_and_refuses_a_blank_one() {
        let dir = std::env::temp_dir().join(format!("prox-test-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp folder");
        let rows = dir.join("rows.jsonl");
        std::fs::write(&rows, "{\"a\": 1}\n[2]\n").expect("a temp file");
        assert_eq!(
            read_rows(&rows),
            [serde_json::json!({"a": 1}), serde_json::json!([2])]
        );
        let gap = dir.join("gap.jsonl");
        std::fs::write(&gap, "{\"a\": 1}\n\n[2]\n").expect("a temp file");
        let message = panic_message(|| {
            read_rows(&gap);
        });
        assert!(message.contains("gap.jsonl:2: a blank line"), "{message}");
        std::fs::remove_dir_all(&dir).expect("the temp folder is removed");
    }
}
