//! GStreamer's RTSP server (tests/rtsp_server.py) as a test peer: started on
//! free 127.0.0.1 ports, steered through its stdin, killed on drop.
//!
//! Include it with `#[path = "common/gst.rs"] mod gst;`.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `tests/rtsp_server.py`.
pub struct RtspTestServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Serves `/live`, `/still` and any `--mount`.
    pub port: u16,
    /// Serves `/auth` (Basic auth, [`USER`] / [`PASSWORD`]).
    pub auth_port: u16,
}

pub const USER: &str = "courier";
pub const PASSWORD: &str = "parcel-7f3a-secret";

/// The Python that has GStreamer's bindings: `DOORWARDEN_TEST_PYTHON`, else
/// the system's (a pyenv or venv `python3` first on PATH usually lacks `gi`).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("DOORWARDEN_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let system = Path::new("/usr/bin/python3");
    if system.exists() {
        system.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl RtspTestServer {
    pub fn start() -> RtspTestServer {
        RtspTestServer::start_with(&[])
    }

    /// `extra` goes to the script's command line (e.g. `--mount hd=clip.h264`).
    pub fn start_with(extra: &[&str]) -> RtspTestServer {
        let root = repo_root();
        let mut child = Command::new(python())
            .arg(root.join("tests/rtsp_server.py"))
            .arg("--clips")
            .arg(root.join("assets/clips"))
            .args(["--user", USER, "--password", PASSWORD])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/rtsp_server.py (needs python3-gi and gir1.2-gst-rtsp-server-1.0)");
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("rtsp_server.py printed nothing within 30 s");
        let mut words = ready.split_whitespace();
        assert_eq!(
            words.next(),
            Some("READY"),
            "unexpected first line from rtsp_server.py: {ready}"
        );
        let mut port = || -> u16 {
            words
                .next()
                .and_then(|w| w.parse().ok())
                .expect("READY <port> <auth port>")
        };
        let (port, auth_port) = (port(), port());
        RtspTestServer {
            stdin: child.stdin.take(),
            child,
            lines,
            port,
            auth_port,
        }
    }

    /// `rtsp://127.0.0.1:<port><path>`; `path` starts with '/'.
    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}{path}", self.port)
    }

    /// The password-protected mount with the given credentials in the URL.
    pub fn auth_url(&self, user: &str, password: &str) -> String {
        format!("rtsp://{user}:{password}@127.0.0.1:{}/auth", self.auth_port)
    }

    /// Sends a control command (`pause`, `resume`, `still`, `moving`, with
    /// an optional mount) and waits until the server applied it.
    pub fn command(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("server still running");
        writeln!(stdin, "{command}").expect("write to rtsp_server.py");
        stdin.flush().expect("flush rtsp_server.py stdin");
        let answer = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("rtsp_server.py did not answer a command");
        assert_eq!(
            answer,
            format!("OK {command}"),
            "rtsp_server.py refused `{command}`"
        );
    }

    /// The camera vanishes: the process is killed, its ports close.
    pub fn kill(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RtspTestServer {
    fn drop(&mut self) {
        self.kill();
    }
}
