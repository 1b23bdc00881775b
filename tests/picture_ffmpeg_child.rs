//! The ffmpeg child of an H.265 camera's session, seen from outside: its
//! life follows the sampling (a child per decoded keyframe outside a close
//! look, one kept during it), a child that dies is replaced, and when the
//! session ends no child is left, running or unreaped.
//!
//! Alone in its test binary: it counts this process's ffmpeg children,
//! which other tests running alongside would add to.

#[path = "common/camera_watch.rs"]
mod camera_watch;
#[path = "common/gst.rs"]
mod gst;

use std::time::{Duration, Instant};

use camera_watch::{CameraWatch, camera, quick};
use doorwarden::core::liveness::LivenessKind;
use doorwarden::io::picture::{CloseLook, FfmpegProgram};
use gst::RtspTestServer;

const LONG: Duration = Duration::from_secs(40);

/// This process's ffmpeg children: pid and state letter (`Z`: exited and
/// not reaped).
fn ffmpeg_children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...
        let (head, rest) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid: u32 = fields.next()?.parse().ok()?;
        (ppid == me && comm == "ffmpeg").then_some((pid, state))
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ffmpeg_child_follows_the_sampling_is_replaced_when_it_dies_and_is_reaped_at_the_end() {
    let server = RtspTestServer::start();
    let cfg = camera(&format!(
        "url: {}\npicture_check: required\n",
        server.url("/cam-live265")
    ));
    let look = CloseLook::default();
    let w = CameraWatch::start_with_ffmpeg(&cfg, quick(&cfg), look.clone(), FfmpegProgram::OnPath);
    w.until_state(LivenessKind::Live, LONG).await;
    w.until("the session's close look", LONG, |w| w.pictures() >= 50)
        .await;

    // Idle: one keyframe every 10 s, each through a child of its own that
    // exits after it; no child waits between them.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before = w.pictures();
    let (mut samples, mut with_child) = (0, 0);
    let idle_until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < idle_until {
        samples += 1;
        if !ffmpeg_children().is_empty() {
            with_child += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle = w.pictures() - before;
    assert!((1..=2).contains(&idle), "{idle} pictures in 12 s idle");
    assert!(
        with_child * 5 < samples,
        "a child ran in {with_child} of {samples} samples while idle"
    );
    assert_eq!(w.state().0, LivenessKind::Live);

    // A close look keeps one child decoding every frame.
    look.set(true);
    let looking = w.pictures();
    w.until("pictures of the close look", LONG, |w| {
        w.pictures() >= looking + 30
    })
    .await;
    let children = ffmpeg_children();
    assert_eq!(children.len(), 1, "{children:?}");
    let (first, _) = children[0];

    // It dies: another takes its place and the pictures go on.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let after_kill = w.pictures();
    w.until("a new child's pictures", LONG, |w| {
        w.pictures() >= after_kill + 30
    })
    .await;
    let children = ffmpeg_children();
    assert_eq!(children.len(), 1, "{children:?}");
    assert_ne!(children[0].0, first, "the killed child is still there");
    assert_eq!(children[0].1, 'S', "{children:?}");

    // The session ends: the child is killed and reaped.
    w.stop().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ffmpeg_children().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ffmpeg_children(), Vec::new());
}
