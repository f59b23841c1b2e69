//! A task's own inference server (`--launch-server`): started from a command template on a
//! free port, ready once `/v1/models` answers, watched while the task runs, stopped at the end.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::run_dir::tail_lines;
use crate::script::shell_quote;
use crate::Error;

/// Lines of the server's log quoted in an error.
const LOG_TAIL_LINES: usize = 30;
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long the server has to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A shell command in which `{model}` and `{port}` are replaced (`vllm serve {model}
    /// --port {port}`).
    pub command_template: String,
    pub model: String,
    /// Where the server's standard output and error go.
    pub log: PathBuf,
    /// How long to wait for `/v1/models` to answer.
    pub ready_timeout: Duration,
}

/// A running inference server, in a process group of its own; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts the server and waits until it answers, failing as soon as it exits.
    pub fn start(options: &ServerOptions) -> Result<Self, Error> {
        let port = free_port()?;
        let command = render_command(&options.command_template, &options.model, port);
        if command.trim().is_empty() {
            return Err(Error::EmptyServerCommand);
        }
        if let Some(parent) = options.log.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Create {
                path: parent.to_owned(),
                source,
            })?;
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&options.log)
            .map_err(|source| Error::Create {
                path: options.log.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| Error::Create {
            path: options.log.clone(),
            source,
        })?;
        tracing::info!(command, port, log = %options.log.display(), "starting the inference server");
        let child = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own group, so that stopping it stops the workers it forks (vLLM does).
            .process_group(0)
            .spawn()
            .map_err(|source| Error::ServerSpawn {
                command: command.clone(),
                source,
            })?;
        let mut server = Server {
            child: Some(child),
            port,
            log: options.log.clone(),
        };
        let started = Instant::now();
        loop {
            server.check_alive()?;
            if answers_models(port) {
                tracing::info!(
                    port,
                    seconds = started.elapsed().as_secs_f64(),
                    "the inference server is ready"
                );
                return Ok(server);
            }
            if started.elapsed() >= options.ready_timeout {
                return Err(Error::ServerTimeout {
                    port,
                    seconds: options.ready_timeout.as_secs(),
                    log: server.log.clone(),
                    log_tail: tail_lines(&server.log, LOG_TAIL_LINES),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL of the server's OpenAI-compatible API.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An error, with the last lines of the server's log, once the server has exited.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(Error::ServerDied {
                    status: status.to_string(),
                    port: self.port,
                    log: self.log.clone(),
                    log_tail: tail_lines(&self.log, LOG_TAIL_LINES),
                })
            }
            Err(source) => Err(Error::Read {
                path: self.log.clone(),
                source,
            }),
        }
    }

    /// Stops the server's process group: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let Ok(raw) = i32::try_from(child.id()) else {
            let _ = child.kill();
            let _ = child.wait();
            return;
        };
        let group = Pid::from_raw(raw);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                // The shell is gone; make sure nothing it started lingers.
                let _ = killpg(group, Signal::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `command` while `server` serves, and stops the server afterwards. If the server dies
/// first, the command is killed and the error carries the server log's last lines.
pub fn run_beside_server(mut server: Server, command: &mut Command) -> Result<ExitStatus, Error> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        program: program.clone(),
        source,
    })?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                server.stop();
                return Ok(status);
            }
            Ok(None) => {}
            Err(source) => return Err(Error::Spawn { program, source }),
        }
        if let Err(error) = server.check_alive() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The template with `{model}` (shell-quoted) and `{port}` replaced.
fn render_command(template: &str, model: &str, port: u16) -> String {
    template
        .replace("{model}", &shell_quote(model))
        .replace("{port}", &port.to_string())
}

/// A port nothing listens on now (the server binds it a moment later).
fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::NoFreePort)?;
    Ok(listener.local_addr().map_err(Error::NoFreePort)?.port())
}

/// Whether `GET /v1/models` answers 200 on the port.
fn answers_models(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 32];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let status_line = String::from_utf8_lossy(&head[..read]);
    status_line.starts_with("HTTP/1.") && status_line.get(9..12) == Some("200")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `script`, a stand-in inference server in Python that takes its port as its
    /// argument, the way a task starts its server.
    fn start_stand_in(dir: &std::path::Path, script: &str) -> Server {
        let server_py = dir.join("server.py");
        std::fs::write(&server_py, script).unwrap();
        let template = format!("python3 {} {{port}}", server_py.display());
        Server::start(&options(dir, &template, Duration::from_secs(30))).unwrap()
    }

    fn options(dir: &std::path::Path, template: &str, timeout: Duration) -> ServerOptions {
        ServerOptions {
            command_template: template.to_owned(),
            model: "/models/my model".to_owned(),
            log: dir.join("logs/server-00000.log"),
            ready_timeout: timeout,
        }
    }

    #[test]
    fn the_template_gets_the_quoted_model_and_the_port() {
        assert_eq!(
            render_command("vllm serve {model} --port {port}", "/m/a b", 8001),
            "vllm serve '/m/a b' --port 8001"
        );
    }

    #[test]
    fn a_server_that_dies_fails_fast_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let error = Server::start(&options(
            dir.path(),
            "echo loading {model}; echo 'CUDA out of memory' >&2; exit 3",
            Duration::from_secs(60),
        ))
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let message = error.to_string();
        assert!(message.contains("exited"), "{message}");
        assert!(message.contains("loading /models/my model"), "{message}");
        assert!(message.contains("CUDA out of memory"), "{message}");
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let error = Server::start(&options(
            dir.path(),
            "echo waiting on {port}; sleep 30",
            Duration::from_millis(600),
        ))
        .unwrap_err();
        assert!(matches!(error, Error::ServerTimeout { .. }), "{error}");
        assert!(error.to_string().contains("waiting on"), "{error}");
    }

    /// A server written in the shell would need netcat; python3 is on every machine that
    /// runs vLLM, and on this one.
    #[test]
    fn a_ready_server_serves_the_command_and_is_stopped_after_it() {
        if std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("this test needs python3 for its stand-in inference server");
        }
        let dir = tempfile::tempdir().unwrap();
        let server = start_stand_in(
            dir.path(),
            "import http.server, sys\n\
             class H(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_GET(self):\n\
             \x20       self.send_response(200 if self.path == '/v1/models' else 404)\n\
             \x20       self.end_headers()\n\
             \x20       self.wfile.write(b'{\"data\": []}')\n\
             http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n",
        );
        let port = server.port();
        assert_eq!(server.endpoint(), format!("http://127.0.0.1:{port}"));
        let status = run_beside_server(
            server,
            Command::new("sh").arg("-c").arg(format!(
                "exec python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/v1/models')\""
            )),
        )
        .unwrap();
        assert!(status.success());
        assert!(
            !answers_models(port),
            "the server still answers after the task"
        );
    }

    #[test]
    fn a_server_dying_during_the_task_kills_the_task() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in that answers one probe and then exits, as a crashing server does.
        let server = start_stand_in(
            dir.path(),
            "import http.server, sys\n\
             class H(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_GET(self):\n\
             \x20       self.send_response(200)\n\
             \x20       self.end_headers()\n\
             s = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)\n\
             s.handle_request()\n\
             print('segfault in the engine', flush=True)\n\
             sys.exit(139)\n",
        );
        let started = Instant::now();
        let error = run_beside_server(server, Command::new("sleep").arg("60")).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(
            error.to_string().contains("segfault in the engine"),
            "{error}"
        );
    }
}
