//! The link's watchdog against a broker that accepts the connection and
//! answers pings but never acknowledges anything else: the state rumqttc
//! was left in by a packet-id collision (bytebeamio/rumqtt#1014), which a
//! real Mosquitto cannot be told to produce. The fake is named for what it
//! is: a fault injector, not a broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use doorwarden::io::mqtt::{BrokerLink, Incoming, WATCHDOG_GIVE_UP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Accepts every connection, answers CONNECT with CONNACK and PINGREQ with
/// PINGRESP, and swallows everything else. Counts the connections.
struct DeafBroker {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl DeafBroker {
    async fn start() -> DeafBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        DeafBroker {
            port,
            connections,
            task,
        }
    }
}

impl Drop for DeafBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream) {
    loop {
        let mut first = [0u8; 1];
        if stream.read_exact(&mut first).await.is_err() {
            return;
        }
        // Remaining length: up to four 7-bit groups.
        let mut len = 0usize;
        for shift in 0..4 {
            let mut b = [0u8; 1];
            if stream.read_exact(&mut b).await.is_err() {
                return;
            }
            len |= usize::from(b[0] & 0x7f) << (7 * shift);
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let reply: &[u8] = match first[0] >> 4 {
            1 => &[0x20, 0x02, 0x00, 0x00], // CONNECT -> CONNACK, accepted
            12 => &[0xd0, 0x00],            // PINGREQ -> PINGRESP
            _ => continue,                  // SUBSCRIBE, PUBLISH: silence
        };
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn config(port: u16) -> doorwarden::config::Mqtt {
    serde_yaml::from_str(&format!(
        "url: mqtt://127.0.0.1:{port}\nclient_id: dw-watchdog\nkeep_alive: 1s\n"
    ))
    .expect("test config")
}

#[tokio::test]
async fn a_broker_that_never_acknowledges_gets_fresh_connections_then_the_link_gives_up() {
    let broker = DeafBroker::start().await;
    let mut link = BrokerLink::start(
        &config(broker.port),
        vec!["doorwarden/+/lock/set".into()],
        std::future::pending(),
    )
    .expect("link starts");

    let mut seen = Vec::new();
    let failed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match link.incoming.recv().await {
                Some(Incoming::Failed { reason }) => break reason,
                Some(other) => seen.push(other),
                None => panic!("link ended without saying why; saw {seen:?}"),
            }
        }
    })
    .await
    .expect("the watchdog gives up within a minute");

    assert!(
        failed.contains("subscriptions not acknowledged"),
        "{failed}"
    );
    assert!(
        !seen.contains(&Incoming::Connected),
        "never subscribed, never connected"
    );
    // One connection, then one fresh one per rebuild.
    let connections = broker.connections.load(Ordering::SeqCst);
    assert!(
        connections > WATCHDOG_GIVE_UP as usize,
        "{connections} connections"
    );
    tokio::time::timeout(Duration::from_secs(5), link.task)
        .await
        .expect("the link task ends")
        .expect("no panic");
    assert!(
        link.handle
            .publish("doorwarden/x/state", "y", false)
            .is_err(),
        "a stopped link takes nothing more"
    );
}

#[test]
fn the_bridge_exits_non_zero_when_its_link_gives_up() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = runtime.block_on(DeafBroker::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("doorwarden.yaml");
    std::fs::write(
        &config,
        format!(
            "mqtt:\n  url: mqtt://127.0.0.1:{}\n  keep_alive: 5s\n\
             locks:\n  front_door:\n    zigbee2mqtt:\n      topic: zigbee2mqtt/front_lock\n\
             storage:\n  dir: {:?}\n",
            broker.port,
            dir.path().join("storage").display().to_string()
        ),
    )
    .expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_doorwarden"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn doorwarden");
    // Four watchdog periods of two 5 s keep-alives, and room for a slow
    // machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("doorwarden still running after 120 s against a deaf broker");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut log);
    }
    assert!(!status.success(), "exited with {status}: {log}");
    assert!(log.contains("the MQTT link failed"), "{log}");
}
