//! The `doorwarden` command.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use doorwarden::addon::{self, AddonError, AddonPaths};
use doorwarden::config;
use doorwarden::io::store::KeptFiles;

#[derive(Parser)]
#[command(
    name = "doorwarden",
    version,
    about = "Smart locks and RTSP cameras in Home Assistant, with a delivery interlock that only opens while the cameras are verifiably live"
)]
struct Cli {
    /// Log level when RUST_LOG is not set (error, warn, info, debug, trace).
    /// Default: info, or warn for the demo (whose timeline is the output).
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge.
    Run {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file and print what it describes.
    CheckConfig {
        /// The config file.
        path: PathBuf,
    },
    /// Show the whole story on this machine: an embedded MQTT broker, a
    /// simulated home (lock, door sensor, RTSP camera) and the real bridge.
    Demo {
        /// Use this broker (mqtt://127.0.0.1:PORT) instead of the embedded one.
        #[arg(long)]
        broker: Option<String>,
        /// Port for the embedded broker (default: a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// After the story, take commands (freeze, stall, request, open…) from stdin.
        #[arg(long)]
        interactive: bool,
        /// Leave after the story (the default when stdin is not a terminal).
        #[arg(long)]
        exit_after_story: bool,
    },
    /// Build the Home Assistant add-on's config (used by the add-on's run.sh).
    AddonConfig(AddonConfigArgs),
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check an audit log's hash chain, name the first broken record, and
    /// explain every repair of a damaged end (bytes cut at start and kept in
    /// a file beside the log).
    ///
    /// Exit status: 0 the chain is intact and was never repaired; 1 the
    /// chain is broken, or the log cannot be read; 3 the chain is intact
    /// with repairs, and every kept file matches its recorded hash; 4 the
    /// chain is intact with repairs, but a kept file is missing or altered;
    /// 5 the chain is intact, but a delivery clip or sidecar it names is
    /// altered, or missing without a retention record deleting it.
    #[command(verbatim_doc_comment)]
    Verify {
        /// An audit log file, or the storage directory holding it.
        path: PathBuf,
        /// Where the delivery clips are now, if not where the audit
        /// records say they were written.
        #[arg(long)]
        recordings: Option<PathBuf>,
    },
}

/// Exit status for a config the bridge refuses to start with.
const EXIT_CONFIG: u8 = 2;
/// `audit verify`: the chain holds, with repairs whose kept files match.
const EXIT_AUDIT_REPAIRED: u8 = 3;
/// `audit verify`: the chain holds, with repairs, but evidence of one is
/// missing or changed.
const EXIT_AUDIT_KEPT_FILE_LOST: u8 = 4;
/// `audit verify`: the chain holds, but a delivery clip it names was
/// altered or is missing without a retention record.
const EXIT_EVIDENCE_ALTERED: u8 = 5;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    let level = cli.log_level.as_deref().unwrap_or(default_level);
    // The demo's embedded broker logs through the same `tracing` as the
    // bridge; its lines (a probe connection closing, a client leaving) are
    // routine for a broker but read like failures in the middle of the
    // demo's story, so they go to a file in the demo's folder instead.
    let demo_dirs = match &cli.command {
        Command::Demo { broker: None, .. } => Some(demo_paths()),
        _ => None,
    };
    init_logging(
        level,
        cli.log_format,
        demo_dirs.as_ref().map(|(_, log)| log.as_path()),
        matches!(cli.command, Command::Demo { .. }),
    );
    match cli.command {
        Command::CheckConfig { path } => match config::load(&path) {
            Ok(cfg) => {
                print!(
                    "{}",
                    doorwarden::summary::render(&cfg, jiff::Timestamp::now())
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "{}: {} problem(s); fix them and run check-config again",
                    path.display(),
                    errors.0.len()
                );
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Audit {
            command: AuditCommand::Verify { path, recordings },
        } => audit_verify(&path, recordings.as_deref()),
        Command::AddonConfig(args) => match addon_config(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("doorwarden addon-config: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Demo {
            broker,
            port,
            interactive,
            exit_after_story,
        } => run_demo(doorwarden_sim::demo::DemoOptions {
            broker,
            port,
            interactive,
            exit_after_story,
            storage: demo_dirs.as_ref().map(|(storage, _)| storage.clone()),
            broker_log: demo_dirs.map(|(_, log)| log),
        }),
        Command::Run { config: path } => {
            let cfg = match config::load(&path) {
                Ok(cfg) => cfg,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!(
                        "doorwarden did not start: {} problem(s) in {}",
                        errors.0.len(),
                        path.display()
                    );
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            run_bridge(cfg)
        }
    }
}

/// The demo's folder (state, audit log) and its embedded broker's log file.
fn demo_paths() -> (PathBuf, PathBuf) {
    let storage = std::env::temp_dir().join(format!("doorwarden-demo-{}", std::process::id()));
    let log = storage.join("broker.log");
    (storage, log)
}

/// Log lines to stderr at `level` (or as RUST_LOG says). For the demo,
/// the embedded broker's own lines (`rumqttd`) never reach the terminal:
/// they go to `broker_log` when one is given and can be created.
fn init_logging(level: &str, format: LogFormat, broker_log: Option<&Path>, demo: bool) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let mut console_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The WebSocket library traces every frame with its payload, and the
    // frames to a Z-Wave JS server carry keypad codes: nothing below info,
    // whatever level was asked for.
    for quiet in ["tungstenite=info", "tokio_tungstenite=info"] {
        if let Ok(directive) = quiet.parse() {
            console_filter = console_filter.add_directive(directive);
        }
    }
    if demo && let Ok(off) = "rumqttd=off".parse() {
        console_filter = console_filter.add_directive(off);
    }
    let console = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(console_filter);
    let file = broker_log.and_then(|path| {
        let dir = path.parent()?;
        std::fs::create_dir_all(dir).ok()?;
        let file = std::fs::File::create(path).ok()?;
        Some(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Arc::new(file))
                .with_filter(EnvFilter::new("rumqttd=info")),
        )
    });
    tracing_subscriber::registry()
        .with(console)
        .with(file)
        .init();
}

/// One thread is plenty for a bridge that moves small messages and frame
/// summaries, and it measured about half the CPU per camera of tokio's
/// multi-threaded runtime (docs/performance.md): on a Raspberry Pi beside
/// Home Assistant that matters more than parallelism.
fn single_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn run_bridge(cfg: config::Config) -> ExitCode {
    let runtime = match single_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("doorwarden: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match runtime.block_on(doorwarden::runtime::run(cfg, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn audit_verify(path: &Path, recordings: Option<&Path>) -> ExitCode {
    match doorwarden::io::store::verify(path) {
        Ok(report) => {
            println!("{report}");
            if !report.is_intact() {
                return ExitCode::FAILURE;
            }
            if !report.evidence.is_empty() {
                let evidence = doorwarden::io::record::verify::check(&report.evidence, recordings);
                println!("{evidence}");
                if !evidence.holds() {
                    return ExitCode::from(EXIT_EVIDENCE_ALTERED);
                }
            }
            match report.kept_files() {
                KeptFiles::NoRepairs => ExitCode::SUCCESS,
                KeptFiles::AllMatch => ExitCode::from(EXIT_AUDIT_REPAIRED),
                KeptFiles::MissingOrAltered => ExitCode::from(EXIT_AUDIT_KEPT_FILE_LOST),
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(options: doorwarden_sim::demo::DemoOptions) -> ExitCode {
    let runtime = match single_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("doorwarden: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(doorwarden_sim::demo::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("doorwarden demo: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// `doorwarden addon-config`: the add-on's files. What goes in them is decided
// in `doorwarden::addon`; this part only reads the inputs and writes.

/// Arguments of `doorwarden addon-config`.
#[derive(Debug, Clone, clap::Args)]
struct AddonConfigArgs {
    /// The add-on options written by the Supervisor.
    #[arg(long, default_value = "/data/options.json")]
    options: PathBuf,
    /// The Supervisor's `/services/mqtt` answer: a file, or `-` for stdin.
    #[arg(long, default_value = "-")]
    mqtt_service: PathBuf,
    /// Where to write the config doorwarden will run with.
    #[arg(long, default_value = "/data/doorwarden.yaml")]
    out: PathBuf,
    /// The add-on's private persistent folder (storage and secret files).
    #[arg(long, default_value = "/data")]
    data_dir: PathBuf,
    /// The add-on's user-visible config folder (for `config_file`).
    #[arg(long, default_value = "/config")]
    config_dir: PathBuf,
}

/// Why `doorwarden addon-config` failed. Messages never hold a password.
#[derive(Debug, thiserror::Error)]
enum AddonConfigError {
    #[error(transparent)]
    Options(#[from] AddonError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Read both inputs, build the config, write the secret files (0600) and
/// then the config, each atomically.
fn addon_config(args: &AddonConfigArgs) -> Result<(), AddonConfigError> {
    let options = read_json(&args.options)?;
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AddonConfigError::Read { path, source }
    };
    let service = if args.mqtt_service.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(read_err(Path::new("<stdin>")))?;
        addon::parse_service(&text)?
    } else {
        let text =
            std::fs::read_to_string(&args.mqtt_service).map_err(read_err(&args.mqtt_service))?;
        addon::parse_service(&text)?
    };
    let paths = AddonPaths {
        data_dir: args.data_dir.clone(),
        config_dir: args.config_dir.clone(),
    };
    let prepared = addon::prepare(&options, &service, &paths)?;
    if !prepared.secrets.is_empty() {
        private_dir(&addon::secrets_dir(&paths))?;
    }
    for secret in &prepared.secrets {
        write_file(&secret.path, secret.value.expose().as_bytes(), true)?;
    }
    write_file(&args.out, prepared.yaml.as_bytes(), true)
}

fn read_json(path: &Path) -> Result<serde_json::Value, AddonConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| AddonConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // serde_json's syntax errors give a line and column, never the content.
    serde_json::from_str(&text).map_err(|e| AddonConfigError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })
}

/// The folder of the password files: readable by the add-on's user only.
fn private_dir(dir: &Path) -> Result<(), AddonConfigError> {
    let err = |source| AddonConfigError::Write {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), AddonConfigError> {
    use std::io::Write;
    let err = |source| AddonConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = open.open(&tmp).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}
