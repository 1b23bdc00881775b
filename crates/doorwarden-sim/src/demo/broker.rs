//! An embedded MQTT broker (rumqttd) on 127.0.0.1, so the demo needs
//! nothing installed.

use std::net::TcpListener;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(std::io::Error),
    #[error("embedded broker settings rejected: {0}")]
    Settings(String),
    #[error("embedded broker did not open 127.0.0.1:{0} in time")]
    NotListening(u16),
}

/// Start the broker on `port` (0 = a free one) and return the port once it
/// accepts connections. The broker runs on its own threads until the process
/// ends.
pub fn start(port: u16) -> Result<u16, BrokerError> {
    let port = if port == 0 {
        let probe = TcpListener::bind("127.0.0.1:0").map_err(BrokerError::NoPort)?;
        probe.local_addr().map_err(BrokerError::NoPort)?.port()
    } else {
        port
    };
    // rumqttd's settings are plain serde data; writing them as JSON keeps
    // this independent of which of its fields are public.
    let settings = serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": 64,
            "max_outgoing_packet_count": 1000,
            "max_segment_size": 10_485_760,
            "max_segment_count": 10,
        },
        "v4": {
            "1": {
                "name": "demo",
                "listen": format!("127.0.0.1:{port}"),
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 60000,
                    "max_payload_size": 1_048_576,
                    "max_inflight_count": 200,
                    "dynamic_filters": true,
                },
            }
        },
    });
    let config: rumqttd::Config =
        serde_json::from_value(settings).map_err(|e| BrokerError::Settings(e.to_string()))?;
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| BrokerError::Settings(e.to_string()))?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BrokerError::NotListening(port))
}
