//! The real Z-Wave JS stack for tests, on 127.0.0.1: zwave-js's mock
//! controller with one keypad door lock (`tests/zwave-js/mock-lock.mjs`)
//! and the real `zwave-server` (from `@zwave-js/server`) in front of it.
//! `scripts/test.sh` installs both with `npm ci` from the lockfile.
//!
//! The test plays the person at the door through [`ZwaveStack::control`]
//! and may kill and restart `zwave-server` on purpose; its cache directory
//! survives, so the restarted server knows the lock at once.
//!
//! Include it with `#[path = "common/zwave_stack.rs"] mod zwave_stack;`.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The node id the mock lock has.
pub const LOCK_NODE: u32 = 2;

fn stack_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/zwave-js")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct ZwaveStack {
    dir: tempfile::TempDir,
    mock: Child,
    mock_in: ChildStdin,
    mock_out: mpsc::Receiver<String>,
    mock_port: u16,
    ws_port: u16,
    server: Option<Child>,
    server_runs: u32,
}

impl ZwaveStack {
    /// Mock lock and `zwave-server`, the server accepting connections.
    pub fn start() -> ZwaveStack {
        let dir = stack_dir();
        assert!(
            dir.join("node_modules/@zwave-js/server").is_dir(),
            "the Z-Wave JS stack is not installed: run scripts/test.sh (npm ci in tests/zwave-js)"
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut mock = Command::new("node")
            .arg(dir.join("mock-lock.mjs"))
            .current_dir(&dir)
            .env("LOCK_NODE_ID", LOCK_NODE.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(tmp.path().join("mock.stderr")).expect("mock log"),
            ))
            .spawn()
            .expect("start node (is Node.js installed?)");
        let mock_in = mock.stdin.take().expect("mock stdin");
        let out = mock.stdout.take().expect("mock stdout");
        let (tx, mock_out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = mock_out
            .recv_timeout(Duration::from_secs(60))
            .expect("the mock lock to listen");
        let mock_port = first
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the mock: {first}"));
        let mut stack = ZwaveStack {
            dir: tmp,
            mock,
            mock_in,
            mock_out,
            mock_port,
            ws_port: free_port(),
            server: None,
            server_runs: 0,
        };
        stack.start_server();
        stack
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    /// Start `zwave-server` (again) and wait until it accepts connections.
    pub fn start_server(&mut self) {
        self.server_runs += 1;
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("server-{}.log", self.server_runs)),
        )
        .expect("server log");
        let cache = self.dir.path().join("cache");
        std::fs::create_dir_all(&cache).expect("cache dir");
        let child = Command::new("node")
            .arg(stack_dir().join("node_modules/@zwave-js/server/dist-esm/bin/server.js"))
            .arg(format!("tcp://127.0.0.1:{}", self.mock_port))
            .arg("--config")
            .arg(stack_dir().join("server-config.cjs"))
            .arg("--port")
            .arg(self.ws_port.to_string())
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--disable-dns-sd")
            .current_dir(stack_dir())
            .env("ZWAVE_CACHE_DIR", &cache)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start zwave-server");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while TcpStream::connect(("127.0.0.1", self.ws_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "zwave-server did not start listening; its log:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL `zwave-server`: no goodbye to its clients.
    pub fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("server-{}.log", self.server_runs)),
        )
        .unwrap_or_default()
    }

    /// One line to the mock lock, its one-line answer.
    pub fn control(&mut self, line: &str) -> String {
        writeln!(self.mock_in, "{line}").expect("write to the mock lock");
        self.mock_in.flush().expect("flush");
        let answer = self
            .mock_out
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the mock lock did not answer `{line}`"));
        assert!(
            !answer.starts_with("error"),
            "the mock lock refused `{line}`: {answer}"
        );
        answer
    }

    /// Where the simulated bolt is: `secured` or `unsecured`.
    pub fn bolt(&mut self) -> String {
        let answer = self.control("bolt?");
        answer
            .strip_prefix("bolt ")
            .unwrap_or(&answer)
            .trim()
            .to_string()
    }

    /// What a keypad slot holds: (user id status, code or `-`).
    pub fn code_slot(&mut self, slot: u16) -> (u8, String) {
        let answer = self.control(&format!("code? {slot}"));
        let parts: Vec<&str> = answer.split_whitespace().collect();
        match parts.as_slice() {
            ["code", _, status, code] => (status.parse().unwrap_or(255), (*code).to_string()),
            _ => panic!("unexpected answer from the mock: {answer}"),
        }
    }
}

impl Drop for ZwaveStack {
    fn drop(&mut self) {
        self.kill_server();
        let _ = self.mock.kill();
        let _ = self.mock.wait();
        if std::thread::panicking() {
            eprintln!("--- zwave-server log ---\n{}", self.server_log());
            let mock =
                std::fs::read_to_string(self.dir.path().join("mock.stderr")).unwrap_or_default();
            eprintln!("--- mock lock stderr ---\n{mock}");
        }
    }
}
