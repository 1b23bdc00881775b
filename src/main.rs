//! The `doorwarden` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

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
    AddonConfig(doorwarden::addon::AddonConfigArgs),
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
    /// chain is intact with repairs, but a kept file is missing or altered.
    #[command(verbatim_doc_comment)]
    Verify {
        /// An audit log file, or the storage directory holding it.
        path: PathBuf,
    },
}

/// Exit status for a config the bridge refuses to start with.
const EXIT_CONFIG: u8 = 2;
/// `audit verify`: the chain holds, with repairs whose kept files match.
const EXIT_AUDIT_REPAIRED: u8 = 3;
/// `audit verify`: the chain holds, with repairs, but evidence of one is
/// missing or changed.
const EXIT_AUDIT_KEPT_FILE_LOST: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    init_logging(
        cli.log_level.as_deref().unwrap_or(default_level),
        cli.log_format,
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
            command: AuditCommand::Verify { path },
        } => audit_verify(&path),
        Command::AddonConfig(args) => match doorwarden::addon::write(&args) {
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
        } => run_demo(doorwarden::demo::DemoOptions {
            broker,
            port,
            interactive,
            exit_after_story,
            storage: None,
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

fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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

fn audit_verify(path: &std::path::Path) -> ExitCode {
    match doorwarden::io::store::verify(path) {
        Ok(report) => {
            println!("{report}");
            if !report.is_intact() {
                return ExitCode::FAILURE;
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

fn run_demo(options: doorwarden::demo::DemoOptions) -> ExitCode {
    let runtime = match single_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("doorwarden: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(doorwarden::demo::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("doorwarden demo: {e}");
            ExitCode::FAILURE
        }
    }
}
