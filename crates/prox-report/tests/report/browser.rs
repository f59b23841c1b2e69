//! The report in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`; `PROX_CHROMIUM` names another binary), driven over the Chrome DevTools Protocol.
//! The page must load without console errors, exceptions or policy violations, show the
//! sample, and filter it; screenshots (the top of the page, and a modified document) are saved
//! to `$CARGO_TARGET_TMPDIR/prox-report-browser/{report,sample}.png`.
//!
//! Without Chromium this test fails: it never skips.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use prox_report::{Report, ReportOptions, RunFolder};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::support::{mixed_docs, report_of, write_mixed_run, write_run, PartFormat};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A headless Chromium and one page of it, attached over the DevTools protocol.
struct Browser {
    process: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Console errors, exceptions and error log entries seen so far.
    errors: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Self {
        let binary = std::env::var("PROX_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = tempfile::tempdir().unwrap();
        let mut process = Command::new(&binary)
            .args([
                "--headless",
                // Tests may run as root in containers, where the sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1280,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start `{binary}` ({error}): the browser test needs Chromium \
                     (`apt-get install chromium`, as .ci/run does, or set PROX_CHROMIUM)"
                )
            });
        let stderr = process.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = sender.send(url.trim().to_owned());
                }
            }
        });
        let url = receiver
            .recv_timeout(TIMEOUT)
            .expect("Chromium printed its DevTools address");
        let (mut socket, _) = tungstenite::connect(url.as_str()).unwrap();
        if let MaybeTlsStream::Plain(stream) = socket.get_mut() {
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        }
        let mut browser = Self {
            process,
            socket,
            session: String::new(),
            next_id: 0,
            errors: Vec::new(),
            _profile: profile,
        };
        let targets = browser.call(None, "Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("Chromium opened a page")["targetId"]
            .clone();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.page(domain, json!({}));
        }
        browser
    }

    /// Sends a command and waits for its answer, noting the events that arrive meanwhile.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let message = self.receive();
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
        }
    }

    fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// The next message; events that report errors are collected.
    fn receive(&mut self) -> Value {
        let message = match self.socket.read().unwrap() {
            Message::Text(text) => serde_json::from_str::<Value>(text.as_str()).unwrap(),
            _ => return Value::Null,
        };
        let params = &message["params"];
        match message["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if params["type"] == "error" || params["type"] == "assert" =>
            {
                self.errors.push(format!("console: {}", params["args"]));
            }
            Some("Runtime.exceptionThrown") => {
                self.errors
                    .push(format!("exception: {}", params["exceptionDetails"]));
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                self.errors
                    .push(format!("log: {}", params["entry"]["text"]));
            }
            _ => {}
        }
        message
    }

    /// Opens a file and waits for its load event (and a little longer, for late errors).
    fn open(&mut self, path: &Path) {
        let url = format!("file://{}", path.display());
        self.page("Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "{url} did not load");
            if self.receive()["method"] == "Page.loadEventFired" {
                break;
            }
        }
        // Round trips let events queued behind the load event arrive.
        for _ in 0..3 {
            self.evaluate("1");
        }
    }

    fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.page(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    fn screenshot(&mut self, path: &Path) {
        let shot = self.page("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.send(Message::text(
            json!({"id": 0, "method": "Browser.close", "params": {}}).to_string(),
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn screenshot_folder() -> PathBuf {
    let folder = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prox-report-browser");
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

const VISIBLE: &str = "document.querySelectorAll('article.doc:not([hidden])').length";

fn select_outcome(browser: &mut Browser, value: &str) -> u64 {
    browser.evaluate(&format!(
        "(() => {{ const s = document.getElementById('filter-outcome'); s.value = {value:?}; \
         s.dispatchEvent(new Event('change')); return {VISIBLE}; }})()"
    ));
    browser.evaluate(VISIBLE).as_u64().unwrap()
}

fn search(browser: &mut Browser, query: &str) -> u64 {
    browser.evaluate(&format!(
        "(() => {{ const s = document.getElementById('filter-search'); s.value = {query:?}; \
         s.dispatchEvent(new Event('input')); return {VISIBLE}; }})()"
    ));
    browser.evaluate(VISIBLE).as_u64().unwrap()
}

#[test]
fn the_report_loads_cleanly_shows_the_sample_and_filters_it_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_mixed_run(
        &run,
        4,
        PartFormat::Parquet,
        json!({"file": "in/a.jsonl", "line": 3, "error": "invalid JSON", "excerpt": "</script>", "stage": "read"}),
    );
    let report = report_of(&run, 20, 11);
    let modified_in_sample = report
        .sample
        .iter()
        .filter(|d| d.row.outcome.key() == "modified")
        .count() as u64;
    let dropped_in_sample = report
        .sample
        .iter()
        .filter(|d| d.row.outcome.key().starts_with("dropped-"))
        .count() as u64;
    let page = dir.path().join("report.html");
    std::fs::write(&page, report.to_html().unwrap()).unwrap();

    let mut browser = Browser::launch();
    browser.open(&page);
    assert_eq!(browser.errors, Vec::<String>::new(), "errors while loading");
    assert_eq!(browser.evaluate("typeof window.__pwned"), "undefined");
    assert_eq!(
        browser.evaluate("document.querySelectorAll('iframe, img').length"),
        0
    );
    assert_eq!(
        browser.evaluate("document.querySelectorAll('article.doc').length"),
        20
    );
    assert_eq!(browser.evaluate(VISIBLE), 20);
    assert_eq!(
        browser.evaluate("document.getElementById('shown-count').textContent"),
        "20 of 20 sampled documents shown"
    );
    assert_eq!(
        browser.evaluate("document.querySelectorAll('.charts svg').length"),
        3
    );

    assert_eq!(select_outcome(&mut browser, "modified"), modified_in_sample);
    assert!(modified_in_sample > 0);
    assert_eq!(select_outcome(&mut browser, "dropped"), dropped_in_sample);
    assert_eq!(select_outcome(&mut browser, "dropped-doc_program"), 3);
    assert_eq!(select_outcome(&mut browser, ""), 20);
    // Searching looks at text, ids and programs.
    assert_eq!(search(&mut browser, "BUY NOW"), 3);
    assert_eq!(search(&mut browser, "no-such-text-anywhere"), 0);
    assert_eq!(search(&mut browser, ""), 20);
    assert_eq!(
        browser.errors,
        Vec::<String>::new(),
        "errors while filtering"
    );

    let screenshot = screenshot_folder().join("report.png");
    browser.screenshot(&screenshot);
    browser
        .evaluate("document.querySelector('article[data-outcome=\"modified\"]').scrollIntoView()");
    let sample = screenshot_folder().join("sample.png");
    browser.screenshot(&sample);
    eprintln!(
        "screenshots: {} and {}",
        screenshot.display(),
        sample.display()
    );
}

/// The error checks above can fail: a script the policy does not allow is reported.
#[test]
fn a_script_the_policy_does_not_allow_is_reported_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_run(&run, &mixed_docs(1), PartFormat::JsonlGz);
    let report = Report::build(&RunFolder::open(&run).unwrap(), ReportOptions::default()).unwrap();
    let html = report
        .to_html()
        .unwrap()
        .replace("</body>", "<script>window.__injected = 1</script></body>");
    let page = dir.path().join("tampered.html");
    std::fs::write(&page, html).unwrap();

    let mut browser = Browser::launch();
    browser.open(&page);
    assert_eq!(browser.evaluate("typeof window.__injected"), "undefined");
    assert!(
        browser
            .errors
            .iter()
            .any(|e| e.contains("Content Security Policy")),
        "{:?}",
        browser.errors
    );
}
