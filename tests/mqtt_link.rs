//! The MQTT link against a real Mosquitto on loopback.

mod common;

use std::time::Duration;

use common::mosquitto::{Mosquitto, TestClient};

#[tokio::test]
async fn test_helper_brokers_accept_clients() {
    for broker in [
        Mosquitto::start(),
        Mosquitto::builder().user("dw", "s3cret pass").start(),
        Mosquitto::builder().tls().start(),
    ] {
        let mut a = TestClient::connect(&broker).await;
        a.subscribe("t/#").await;
        let b = TestClient::connect(&broker).await;
        b.publish("t/x", "hello", false).await;
        let got = a.wait_topic("t/x", Duration::from_secs(5)).await;
        assert_eq!(got.text(), "hello");
        assert!(!got.retain);
    }
}
