//! The simulated camera, driven by retina: the RTSP client doorwarden's
//! camera watcher uses. Each fault knob is checked for what a watcher would
//! see on the wire.
//!
//! Timing margins are wide on purpose: the machines running this are shared
//! and slow. Nothing here asserts how fast anything is.

use std::time::{Duration, Instant};

use doorwarden::config::Secret;
use doorwarden_sim::camera::{SimAuthScheme, SimCamera, SimCameraOptions, SimClip, SimCredentials};
use futures::StreamExt;
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport, UdpTransportOptions,
};
use retina::codec::CodecItem;

/// Far longer than any step should take; a hang fails instead of blocking.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
struct Seen {
    arrived: Instant,
    rtp: i64,
    key: bool,
    data: Vec<u8>,
}

async fn start(options: SimCameraOptions) -> SimCamera {
    SimCamera::start(options).await.expect("camera starts")
}

async fn play(url: &str, creds: Option<Credentials>) -> Result<Demuxed, retina::Error> {
    play_over(url, creds, Transport::Tcp(TcpTransportOptions::default())).await
}

async fn play_over(
    url: &str,
    creds: Option<Credentials>,
    transport: Transport,
) -> Result<Demuxed, retina::Error> {
    let url = url::Url::parse(url).expect("camera URL parses");
    let attempt = async {
        let mut session = Session::describe(url, SessionOptions::default().creds(creds)).await?;
        session
            .setup(0, SetupOptions::default().transport(transport))
            .await?;
        session.play(PlayOptions::default()).await?.demuxed()
    };
    tokio::time::timeout(PATIENCE, attempt)
        .await
        .expect("describe/setup/play answered in time")
}

/// The next video frame, skipping RTCP. `Ok(None)` when the stream ended,
/// `Err(elapsed)` when nothing came within `within`.
async fn next_frame(
    stream: &mut Demuxed,
    within: Duration,
) -> Result<Option<Result<Seen, retina::Error>>, tokio::time::error::Elapsed> {
    tokio::time::timeout(within, async {
        loop {
            match stream.next().await {
                None => return None,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(CodecItem::VideoFrame(f))) => {
                    return Some(Ok(Seen {
                        arrived: Instant::now(),
                        rtp: f.timestamp().timestamp(),
                        key: f.is_random_access_point(),
                        data: f.data().to_vec(),
                    }));
                }
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
}

async fn frames(stream: &mut Demuxed, n: usize) -> Vec<Seen> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let frame = next_frame(stream, PATIENCE)
            .await
            .expect("a frame within the patience limit")
            .expect("stream still open")
            .expect("frame without error");
        seen.push(frame);
    }
    seen
}

/// Reads frames until two consecutive ones show `change`, and returns the
/// second. Frames already on the wire when a knob turns still show the old
/// behaviour, and how many there are depends on how fast the test reads.
async fn wait_for(
    stream: &mut Demuxed,
    change: &str,
    shows: impl Fn(&Seen, &Seen) -> bool,
) -> Seen {
    let mut prev = frames(stream, 1).await.remove(0);
    for _ in 0..45 {
        let cur = frames(stream, 1).await.remove(0);
        if shows(&prev, &cur) {
            return cur;
        }
        prev = cur;
    }
    panic!("no {change} within 45 frames");
}

/// Counts video frames and RTCP packets for `period`. Panics if the stream
/// ends or fails meanwhile.
async fn watch_items(stream: &mut Demuxed, period: Duration) -> (usize, usize) {
    let (mut video, mut rtcp) = (0, 0);
    let until = tokio::time::Instant::now() + period;
    while let Ok(item) = tokio::time::timeout_at(until, stream.next()).await {
        match item {
            Some(Ok(CodecItem::VideoFrame(_))) => video += 1,
            Some(Ok(CodecItem::Rtcp(_))) => rtcp += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("stream failed: {e}"),
            None => panic!("stream ended"),
        }
    }
    (video, rtcp)
}

fn rtp_steps(seen: &[Seen]) -> Vec<i64> {
    seen.windows(2).map(|w| w[1].rtp - w[0].rtp).collect()
}

#[tokio::test]
async fn live_stream_paces_15_fps_with_keyframes_every_second() {
    let camera = start(SimCameraOptions::default()).await;
    assert!(camera.url().starts_with("rtsp://127.0.0.1:"));
    assert!(camera.url().ends_with("/sim/camera"));
    let mut stream = play(&camera.url(), None).await.expect("plays");
    let seen = frames(&mut stream, 40).await;

    assert!(seen[0].key, "a new client starts at an IDR");
    let keys: Vec<usize> = (0..seen.len()).filter(|&i| seen[i].key).collect();
    assert_eq!(keys, vec![0, 15, 30], "one IDR a second at 15 fps");
    assert!(
        rtp_steps(&seen).iter().all(|&d| d == 6000),
        "90 kHz / 15 fps"
    );
    for pair in seen.windows(2) {
        assert_ne!(pair[0].data, pair[1].data, "a moving picture");
    }
    // Real-time pacing, not the clip dumped at once: 39 frame intervals are
    // 2.6 s; allow for a late first frame. (A lower bound only: a slow
    // machine can only make it longer.)
    let span = seen[39].arrived - seen[0].arrived;
    assert!(span > Duration::from_millis(1800), "40 frames in {span:?}");
    assert!(camera.frames_sent() >= 40);
}

#[tokio::test]
async fn a_recording_loops_its_clip_with_timestamps_still_rising() {
    let camera = start(SimCameraOptions {
        clip: SimClip::Recording,
        ..SimCameraOptions::default()
    })
    .await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    // The clip is 60 frames; 75 spans the loop point.
    let seen = frames(&mut stream, 75).await;
    assert!(rtp_steps(&seen).iter().all(|&d| d == 6000));
    assert_eq!(seen[60].data, seen[0].data, "the clip starts over");
    assert!(seen[60].key);
}

#[tokio::test]
async fn the_live_source_never_repeats_a_keyframe() {
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    // Five seconds: past where the recording loops.
    let seen = frames(&mut stream, 75).await;
    let keys: Vec<&Seen> = seen.iter().filter(|f| f.key).collect();
    assert_eq!(keys.len(), 5, "one IDR a second");
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a.data, b.data, "a live keyframe is new every time");
        }
    }
}

#[tokio::test]
async fn replay_loops_the_last_three_seconds_byte_for_byte() {
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    let before = frames(&mut stream, 75).await;
    camera.replay();
    // The loop starts at a keyframe already sent.
    let first = wait_for(&mut stream, "a replayed keyframe", |_, b| {
        b.key && before.iter().any(|f| f.data == b.data)
    })
    .await;
    let mut looped = vec![first];
    looped.extend(frames(&mut stream, 89).await);
    // Three GOPs of 15 frames, over and over, with timestamps running on.
    for k in 0..45 {
        assert_eq!(looped[k].data, looped[k + 45].data, "frame {k}");
    }
    assert_eq!(looped.iter().filter(|f| f.key).count(), 6);
    assert!(rtp_steps(&looped).iter().all(|&d| d == 6000));

    camera.restore();
    wait_for(&mut stream, "a new keyframe", |_, b| {
        b.key && !looped.iter().any(|f| f.data == b.data)
    })
    .await;
}

#[tokio::test]
async fn freeze_repeats_identical_bytes_then_restore_moves_again() {
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    frames(&mut stream, 3).await;
    camera.freeze();
    wait_for(&mut stream, "repeat", |a, b| a.data == b.data).await;
    let frozen = frames(&mut stream, 15).await;
    for pair in frozen.windows(2) {
        assert_eq!(pair[0].data, pair[1].data, "byte-identical frames");
    }
    assert!(
        rtp_steps(&frozen).iter().all(|&d| d == 6000),
        "timestamps advance"
    );

    camera.restore();
    wait_for(&mut stream, "motion", |a, b| a.data != b.data).await;
    let moving = frames(&mut stream, 5).await;
    for pair in moving.windows(2) {
        assert_ne!(pair[0].data, pair[1].data);
    }
}

#[tokio::test]
async fn still_gives_small_p_frames_that_still_differ() {
    // The live encoder coding one unchanging picture: its P-frames are
    // near-empty, yet never byte-identical (each has its own frame number).
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    let before = frames(&mut stream, 10).await;
    let moving_p: Vec<usize> = before
        .iter()
        .filter(|f| !f.key)
        .map(|f| f.data.len())
        .collect();
    assert!(moving_p.iter().all(|&n| n > 200), "{moving_p:?}");

    camera.still();
    // Wait for the next IDR: after it, nothing changes.
    let mut waited = 0;
    loop {
        let f = frames(&mut stream, 1).await.remove(0);
        if f.key {
            break;
        }
        waited += 1;
        assert!(waited < 30, "no IDR after switching to the still picture");
    }
    let still = frames(&mut stream, 12).await;
    let sizes: Vec<usize> = still.iter().map(|f| f.data.len()).collect();
    assert!(still.iter().all(|f| !f.key));
    assert!(
        sizes.iter().all(|&n| n < 200),
        "near-empty P-frames: {sizes:?}"
    );
    for pair in still.windows(2) {
        assert_ne!(pair[0].data, pair[1].data, "not byte-identical");
    }
}

#[tokio::test]
async fn stall_sends_no_frames_but_keeps_the_session() {
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    frames(&mut stream, 3).await;
    camera.stall();
    // Drain what was in flight until the stream goes quiet.
    let mut drained = 0;
    while next_frame(&mut stream, Duration::from_millis(1500))
        .await
        .is_ok()
    {
        drained += 1;
        assert!(drained < 30, "frames keep coming after stall()");
    }
    // Quiet, and retina is still waiting: the case it never times out on,
    // as RTCP sender reports keep the connection looking busy.
    let (video, rtcp) = watch_items(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(video, 0, "no frame while stalled");
    assert!(rtcp >= 1, "sender reports keep coming while stalled");

    let sent = camera.frames_sent();
    camera.restore();
    let resumed = frames(&mut stream, 3).await;
    assert!(resumed.len() == 3 && camera.frames_sent() > sent);
}

#[tokio::test]
async fn drop_all_ends_the_stream_and_new_clients_still_connect() {
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    frames(&mut stream, 3).await;
    camera.drop_all();
    let mut ended = false;
    for _ in 0..30 {
        match next_frame(&mut stream, PATIENCE).await {
            Ok(Some(Ok(_))) => continue, // in flight before the drop
            Ok(None) | Ok(Some(Err(_))) => {
                ended = true;
                break;
            }
            Err(_) => panic!("stream neither ended nor errored after drop_all"),
        }
    }
    assert!(ended);

    let mut again = play(&camera.url(), None).await.expect("reconnects");
    frames(&mut again, 2).await;
}

#[tokio::test]
async fn refuse_makes_describe_fail_to_connect_until_accept() {
    let camera = start(SimCameraOptions::default()).await;
    camera.refuse();
    // The listener closes asynchronously; wait until it has.
    let deadline = Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(camera.local_addr())
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "still accepting after refuse()");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = play(&camera.url(), None).await.err().expect("refused");
    assert_eq!(err.status_code(), None, "no RTSP answer at all");
    assert!(
        err.to_string().contains("refused"),
        "connection refused: {err}"
    );

    camera.accept();
    let deadline = Instant::now() + PATIENCE;
    let mut stream = loop {
        match play(&camera.url(), None).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "not accepting again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    frames(&mut stream, 2).await;
}

async fn credentials_are_demanded(scheme: SimAuthScheme) {
    let camera = start(SimCameraOptions {
        credentials: Some(SimCredentials {
            scheme,
            ..SimCredentials::new("courier", Secret::new("s3cret"))
        }),
        ..SimCameraOptions::default()
    })
    .await;
    let wrong = Credentials {
        username: "courier".to_owned(),
        password: "guess".to_owned(),
    };
    let err = play(&camera.url(), Some(wrong)).await.err().expect("401");
    assert_eq!(err.status_code(), Some(401));
    let err = play(&camera.url(), None).await.err().expect("401");
    assert_eq!(err.status_code(), Some(401));

    let right = Credentials {
        username: "courier".to_owned(),
        password: "s3cret".to_owned(),
    };
    let mut stream = play(&camera.url(), Some(right)).await.expect("plays");
    frames(&mut stream, 2).await;
}

#[tokio::test]
async fn digest_credentials_are_demanded() {
    credentials_are_demanded(SimAuthScheme::Digest).await;
}

#[tokio::test]
async fn basic_credentials_are_demanded() {
    credentials_are_demanded(SimAuthScheme::Basic).await;
}

#[tokio::test]
async fn wrong_path_is_404() {
    let camera = start(SimCameraOptions::default()).await;
    let wrong = camera.url().replace("/sim/camera", "/other");
    let err = play(&wrong, None).await.err().expect("404");
    assert_eq!(err.status_code(), Some(404));
}

#[tokio::test]
async fn udp_transport_streams_and_takes_faults() {
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play_over(
        &camera.url(),
        None,
        Transport::Udp(UdpTransportOptions::default()),
    )
    .await
    .expect("plays over UDP");
    let seen = frames(&mut stream, 20).await;
    assert!(seen.iter().any(|f| f.key));
    assert!(rtp_steps(&seen).iter().all(|&d| d == 6000));

    camera.freeze();
    wait_for(&mut stream, "repeat", |a, b| a.data == b.data).await;
    let frozen = frames(&mut stream, 5).await;
    assert!(frozen.windows(2).all(|w| w[0].data == w[1].data));

    camera.stall();
    let mut drained = 0;
    while next_frame(&mut stream, Duration::from_millis(1500))
        .await
        .is_ok()
    {
        drained += 1;
        assert!(drained < 30, "frames keep coming after stall()");
    }
}

#[tokio::test]
async fn half_speed_clock_runs_rtp_time_at_half_the_arrival_rate() {
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    frames(&mut stream, 3).await;
    camera.half_speed_clock();
    wait_for(&mut stream, "slow clock", |a, b| b.rtp - a.rtp == 3000).await;
    let seen = frames(&mut stream, 30).await;
    assert!(rtp_steps(&seen).iter().all(|&d| d == 3000));
    // 29 frames of RTP time is 0.97 s; they arrive over 1.9 s of real time
    // (more on a slow machine, which only lowers the ratio).
    let rtp_secs = (seen[29].rtp - seen[0].rtp) as f64 / 90_000.0;
    let arrival_secs = (seen[29].arrived - seen[0].arrived).as_secs_f64();
    assert!(
        rtp_secs / arrival_secs < 0.75,
        "RTP {rtp_secs} s over {arrival_secs} s"
    );
}

#[tokio::test]
async fn freeze_timestamps_keeps_frames_coming_at_one_timestamp() {
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    frames(&mut stream, 3).await;
    camera.freeze_timestamps();
    wait_for(&mut stream, "stopped clock", |a, b| b.rtp == a.rtp).await;
    let seen = frames(&mut stream, 10).await;
    assert!(rtp_steps(&seen).iter().all(|&d| d == 0));
    for pair in seen.windows(2) {
        assert_ne!(pair[0].data, pair[1].data, "pictures keep moving");
    }
}

#[tokio::test]
async fn garbage_makes_retina_fail_rather_than_hang() {
    let camera = start(SimCameraOptions::default()).await;
    let mut stream = play(&camera.url(), None).await.expect("plays");
    frames(&mut stream, 3).await;
    camera.garbage();
    let mut failed = false;
    for _ in 0..30 {
        match next_frame(&mut stream, PATIENCE).await {
            Ok(Some(Ok(_))) => continue, // in flight before the switch
            Ok(Some(Err(_))) | Ok(None) => {
                failed = true;
                break;
            }
            Err(_) => panic!("retina hung on garbage"),
        }
    }
    assert!(failed);

    // A new client gets garbage instead of a DESCRIBE response.
    let err = play(&camera.url(), None).await.err().expect("garbage");
    assert_eq!(err.status_code(), None);
}

#[tokio::test]
async fn concurrent_clients_each_get_the_stream_and_faults() {
    let camera = start(SimCameraOptions::default()).await;
    let mut a = play(&camera.url(), None).await.expect("a plays");
    let mut b = play(&camera.url(), None).await.expect("b plays");
    frames(&mut a, 2).await;
    frames(&mut b, 2).await;
    camera.freeze();
    for stream in [&mut a, &mut b] {
        wait_for(stream, "repeat", |a, b| a.data == b.data).await;
        let seen = frames(stream, 4).await;
        assert!(seen.windows(2).all(|w| w[0].data == w[1].data));
    }
}

#[tokio::test]
async fn client_garbage_gets_400_and_the_camera_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let camera = start(SimCameraOptions::default()).await;
    let mut raw = tokio::net::TcpStream::connect(camera.local_addr())
        .await
        .expect("connects");
    raw.write_all(b"\x00\xffnot rtsp at all\r\n\r\n")
        .await
        .expect("writes");
    let mut reply = Vec::new();
    tokio::time::timeout(PATIENCE, raw.read_to_end(&mut reply))
        .await
        .expect("the camera hangs up")
        .expect("reads");
    assert!(
        reply.starts_with(b"RTSP/1.0 400 "),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );

    let mut stream = play(&camera.url(), None).await.expect("still serving");
    frames(&mut stream, 2).await;
}

#[tokio::test]
async fn dropping_the_last_handle_shuts_the_camera_down() {
    let camera = start(SimCameraOptions::default()).await;
    let addr = camera.local_addr();
    let mut stream = play(&camera.url(), None).await.expect("plays");
    frames(&mut stream, 2).await;
    let clone = camera.clone();
    drop(camera);
    // A clone keeps it running.
    frames(&mut stream, 2).await;
    drop(clone);
    let mut ended = false;
    for _ in 0..30 {
        match next_frame(&mut stream, PATIENCE).await {
            Ok(Some(Ok(_))) => continue, // in flight before the drop
            Ok(None) | Ok(Some(Err(_))) => {
                ended = true;
                break;
            }
            Err(_) => panic!("stream still open after the camera was dropped"),
        }
    }
    assert!(ended);
    let deadline = Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening after drop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
