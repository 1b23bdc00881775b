//! The Z-Wave JS server is hostile input like every MQTT topic. A server on
//! 127.0.0.1 that misbehaves on purpose (an API schema doorwarden does not
//! speak, frames that are not JSON or lack fields, a message far over the
//! size cap) in front of `doorwarden run` as a child process and a real
//! Mosquitto: the bridge says why it refuses, skips the garbage, keeps what
//! makes sense, drops an oversized connection and comes back.

mod common;
#[path = "common/process_home.rs"]
mod process_home;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use common::mosquitto::{Mosquitto, TestClient};
use process_home::{Bridge, LONG, LogFormat, collect_until, door_topic, is_state, wait_until};

const DOOR: &str = "front_door";
const NODE: u64 = 2;

/// The lock's answer to a Door Lock get: secured.
fn bolt_answer(id: &Value) -> String {
    json!({"type":"result","success":true,"messageId":id,"result":{"response":{
        "currentMode":255,"targetMode":255,"duration":{"value":0,"unit":"seconds"}}}})
    .to_string()
}

/// What the hostile server does on its n-th connection (from 1).
async fn serve(stream: tokio::net::TcpStream, n: usize) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let max = if n == 1 { 20 } else { 50 };
    let version = json!({"type":"version","driverVersion":"15.29.0","serverVersion":"3.10.2",
        "homeId":1,"minSchemaVersion":0,"maxSchemaVersion":max});
    if ws.send(Message::text(version.to_string())).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(req) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let id = req["messageId"].clone();
        match req["command"].as_str() {
            Some("set_api_schema") => {
                let ok = json!({"type":"result","success":true,"messageId":id,"result":{}});
                let _ = ws.send(Message::text(ok.to_string())).await;
            }
            Some("start_listening") => {
                // On the second connection the lock is still being
                // interviewed: its stored values (an old "unsecured") are
                // not news until its `ready` event.
                let ready = n != 2;
                let mode = if ready { 255 } else { 0 };
                let state = json!({"type":"result","success":true,"messageId":id,"result":{"state":{
                "driver":{},"controller":{},"nodes":[{"nodeId":NODE,"ready":ready,"status":4,"values":[
                    {"commandClass":98,"endpoint":0,"property":"currentMode","value":mode},
                    {"commandClass":128,"endpoint":0,"property":"level","value":"lots"}
                ]}]}}});
                let _ = ws.send(Message::text(state.to_string())).await;
                if n == 2 {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let ready = json!({"type":"event","event":{"source":"node","event":"ready","nodeId":NODE,
                        "nodeState":{"nodeId":NODE,"ready":true,"status":4,"values":[
                            {"commandClass":98,"endpoint":0,"property":"currentMode","value":255}]}}});
                    let _ = ws.send(Message::text(ready.to_string())).await;
                    // Now ready, the lock is asked where its bolt is.
                    while let Some(Ok(Message::Text(text))) = ws.next().await {
                        let Ok(ask) = serde_json::from_str::<Value>(text.as_str()) else {
                            continue;
                        };
                        if ask["command"] == "endpoint.invoke_cc_api" && ask["commandClass"] == 98 {
                            let _ = ws.send(Message::text(bolt_answer(&ask["messageId"]))).await;
                            break;
                        }
                    }
                    // Garbage, each of which must be skipped without
                    // ending the connection…
                    for junk in [
                        "not json {",
                        "[1,2,3]",
                        r#"{"type":"event"}"#,
                        r#"{"type":"result","success":true}"#,
                        r#"{"type":"event","event":{"source":"node","event":"value updated","nodeId":2,"args":{"commandClass":98,"endpoint":0,"property":"currentMode","newValue":"wide open"}}}"#,
                    ] {
                        let _ = ws.send(Message::text(junk)).await;
                    }
                    let _ = ws.send(Message::binary(vec![0u8; 64])).await;
                    // …then a thumb-turn, which must still count.
                    let update = json!({"type":"event","event":{"source":"node","event":"value updated","nodeId":NODE,
                        "args":{"commandClass":98,"endpoint":0,"property":"currentMode","newValue":0,"prevValue":255}}});
                    let manual = json!({"type":"event","event":{"source":"node","event":"notification","nodeId":NODE,
                        "endpointIndex":0,"ccId":113,"args":{"type":6,"event":2,"label":"Access Control",
                        "eventLabel":"Manual unlock operation"}}});
                    let _ = ws.send(Message::text(update.to_string())).await;
                    let _ = ws.send(Message::text(manual.to_string())).await;
                    // A message over the 16 MiB cap ends the connection.
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    let huge = format!(
                        r#"{{"type":"event","event":{{"source":"node","pad":"{}"}}}}"#,
                        "x".repeat(17 << 20)
                    );
                    let _ = ws.send(Message::text(huge)).await;
                }
            }
            // The lock's own answer to "where is your bolt?".
            Some("endpoint.invoke_cc_api") if req["commandClass"] == 98 => {
                let _ = ws.send(Message::text(bolt_answer(&id))).await;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_zwave_server_is_refused_skipped_and_cut_off_at_the_size_cap() {
    let broker = Mosquitto::start();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(serve(stream, n));
        }
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).expect("storage");
    let config = dir.path().join("doorwarden.yaml");
    std::fs::write(
        &config,
        format!(
            "mqtt:\n  url: {}\n  client_id: doorwarden-under-test\n\
             locks:\n  {DOOR}:\n    zwave_js_server: {{url: \"ws://127.0.0.1:{port}\", node: {NODE}}}\n\
             storage:\n  dir: {:?}\n",
            broker.url(),
            storage.display().to_string()
        ),
    )
    .expect("config");
    let mut obs = TestClient::connect(&broker).await;
    obs.subscribe("doorwarden/#").await;
    let bridge = Bridge::start(&config, &dir.path().join("logs"), LogFormat::Text, "info");

    // First connection: a server too old to share a schema. Refused, and
    // the owner is told which side to update.
    wait_until("the schema refusal in the log", || {
        bridge.output().contains(
            "the Z-Wave JS server speaks API schemas 0-20, doorwarden speaks 32-50: update the Z-Wave JS server",
        )
    })
    .await;

    // Second: the lock is known LOCKED (the malformed battery level beside
    // it skipped), the garbage is skipped, and the thumb-turn still counts.
    // The lock is shown LOCKED once interviewed, never the stale
    // "unsecured" from before its ready event.
    let seen = collect_until(
        &mut obs,
        |m| {
            is_state(m, DOOR)
                && m.json()["lock"] == "UNLOCKED"
                && m.json()["lock_source"] == "manual"
        },
        "the manual unlock after the garbage",
    )
    .await;
    let shown: Vec<String> = seen
        .iter()
        .filter(|m| is_state(m, DOOR))
        .filter_map(|m| m.json()["lock"].as_str().map(str::to_string))
        .collect();
    let first_locked = shown.iter().position(|w| w == "LOCKED");
    let first_unlocked = shown.iter().position(|w| w == "UNLOCKED");
    assert!(
        first_locked.is_some() && first_locked < first_unlocked,
        "the stale value of a lock not yet interviewed was shown: {shown:?}"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "garbage ended a connection"
    );

    // The oversized message: the connection is dropped, the lock shown
    // unavailable, and the bridge connects again.
    obs.wait_for(
        |m| m.topic == door_topic(DOOR, "availability") && m.text() == "offline",
        LONG,
        "the lock unavailable after the oversized message",
    )
    .await;
    wait_until("a new connection", || {
        connections.load(Ordering::SeqCst) >= 3
    })
    .await;
    let out = bridge.output();
    assert!(
        !out.contains("xxxxxxxx"),
        "the oversized message was logged"
    );
    drop(bridge);
}
