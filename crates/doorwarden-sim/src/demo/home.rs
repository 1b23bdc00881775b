//! A simulated home with the real bridge on top: one door with a
//! Zigbee2MQTT-style lock and contact sensor, one RTSP camera (encoding a
//! live scene, so its pictures pass the picture checks), all of them
//! simulations from [`crate`], and doorwarden itself running the same
//! code as `doorwarden run` ([`doorwarden::runtime::run`]).
//!
//! Used by `doorwarden demo` and by the end-to-end tests, so the story the
//! demo tells is the one the tests check.

use std::path::{Path, PathBuf};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::camera::{SimCamera, SimCameraError, SimCameraOptions};
use crate::zigbee2mqtt_lock::{SimError, SimZigbeeContact, SimZigbeeLock};
use doorwarden::config::{self, Config};

/// The door's key in the config and its topics.
pub const DOOR: &str = "front_door";
/// The camera's key.
pub const CAMERA: &str = "porch";
/// Zigbee2MQTT topic of the simulated lock.
pub const LOCK_TOPIC: &str = "zigbee2mqtt/demo_front_lock";
/// Zigbee2MQTT topic of the simulated contact sensor.
pub const CONTACT_TOPIC: &str = "zigbee2mqtt/demo_front_contact";

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("simulated camera: {0}")]
    Camera(#[from] SimCameraError),
    #[error("simulated lock: {0}")]
    Lock(#[from] SimError),
    #[error("the demo's own config is invalid (a bug):\n{0}")]
    Config(#[from] config::ConfigErrors),
    #[error("storage directory {path}: {source}")]
    Storage {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The simulated devices and the running bridge.
pub struct SimHome {
    pub camera: SimCamera,
    pub lock: SimZigbeeLock,
    pub contact: SimZigbeeContact,
    pub config: Config,
    stop: watch::Sender<bool>,
    bridge: JoinHandle<Result<(), doorwarden::runtime::RuntimeError>>,
}

/// The demo home's config, as a user would write it (and checked the same
/// way). Timers are short so the story fits in a minute.
pub fn config_text(broker_port: u16, camera_url: &str, storage: &Path) -> String {
    format!(
        r#"# doorwarden demo: a simulated home (every device here is a simulation)
mqtt:
  url: mqtt://127.0.0.1:{broker_port}
  client_id: doorwarden-demo
cameras:
  {CAMERA}:
    name: Porch camera (simulated)
    url: {camera_url}
    stall_after: 1s
    freeze_after: 400ms
    warmup: 2s
    # The simulated camera encodes live, so its picture is checked too:
    # a frozen, covered or replayed picture keeps the door shut.
    picture_check: required
locks:
  {DOOR}:
    name: Front door (simulated)
    zigbee2mqtt:
      topic: {LOCK_TOPIC}
    contact:
      zigbee2mqtt:
        topic: {CONTACT_TOPIC}
    cameras: [{CAMERA}]
    confirm_timeout: 3s
deliveries:
  {DOOR}:
    time_zone: UTC
    max_unlocked: 1m
    relock_after_close: 2s
    entries_per_window: 3
    on_camera_loss: relock
    grant_duration: 10m
storage:
  dir: {storage}
"#,
        storage = storage.display()
    )
}

impl SimHome {
    /// Start the simulated camera, lock and contact sensor on the broker at
    /// 127.0.0.1:`broker_port`, then the bridge.
    pub async fn start(broker_port: u16, storage: &Path) -> Result<SimHome, HomeError> {
        std::fs::create_dir_all(storage).map_err(|source| HomeError::Storage {
            path: storage.to_path_buf(),
            source,
        })?;
        let camera = SimCamera::start(SimCameraOptions::default()).await?;
        let lock = SimZigbeeLock::start("127.0.0.1", broker_port, LOCK_TOPIC).await?;
        let contact = SimZigbeeContact::start("127.0.0.1", broker_port, CONTACT_TOPIC).await?;
        let text = config_text(broker_port, &camera.url(), storage);
        let config = config::load_str(&text, "<demo>")?;
        let (stop, mut stopped) = watch::channel(false);
        let bridge_config = config.clone();
        let bridge = tokio::spawn(async move {
            doorwarden::runtime::run(bridge_config, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
        });
        Ok(SimHome {
            camera,
            lock,
            contact,
            config,
            stop,
            bridge,
        })
    }

    /// Stop the bridge (as Ctrl-C would) and wait for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.bridge.await;
    }

    /// Whether the bridge task ended on its own (an error at start).
    pub fn bridge_finished(&self) -> bool {
        self.bridge.is_finished()
    }
}
