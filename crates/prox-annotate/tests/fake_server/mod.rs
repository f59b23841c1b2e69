//! A scripted OpenAI-compatible chat server on 127.0.0.1, for end-to-end tests: plain HTTP/1.1
//! over std sockets, keep-alive, `GET /v1/models` and `POST /v1/chat/completions`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the script answers: an HTTP status and the message content (for 200) or body.
pub struct Reply {
    pub status: u16,
    pub content: String,
}

impl Reply {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            status: 200,
            content: content.into(),
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            content: "scripted failure".to_owned(),
        }
    }
}

/// The script: the user message and how many times this same message was asked before.
pub type Script = dyn Fn(&str, usize) -> Reply + Send + Sync;

pub struct FakeChatServer {
    pub endpoint: String,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

impl FakeChatServer {
    pub fn start(
        model: &'static str,
        script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("local address"));
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let script: Arc<Script> = Arc::new(script);
        let shared = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let script = Arc::clone(&script);
                let seen = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, model, &*script, &seen));
            }
        });
        Self { endpoint, seen }
    }

    /// Chat requests answered so far, retries included.
    pub fn requests(&self) -> usize {
        self.seen.lock().expect("not poisoned").values().sum()
    }
}

fn serve(stream: TcpStream, model: &str, script: &Script, seen: &Mutex<HashMap<String, usize>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, response) = if request_line.starts_with("GET /v1/models") {
            (
                200,
                serde_json::json!({"object": "list", "data": [{"id": model, "object": "model"}]})
                    .to_string(),
            )
        } else if request_line.starts_with("POST /v1/chat/completions") {
            let request: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
            assert_eq!(request["model"], model);
            assert_eq!(request["temperature"], 0.0);
            let prompt = request["messages"][0]["content"]
                .as_str()
                .expect("a user message")
                .to_owned();
            let before = {
                let mut seen = seen.lock().expect("not poisoned");
                let count = seen.entry(prompt.clone()).or_insert(0);
                *count += 1;
                *count - 1
            };
            let reply = script(&prompt, before);
            if reply.status == 200 {
                (200, serde_json::json!({
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }).to_string())
            } else {
                (reply.status, reply.content)
            }
        } else {
            (404, "not found".to_owned())
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            response.len()
        );
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(response.as_bytes()).is_err()
        {
            return;
        }
    }
}
