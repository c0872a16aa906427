//! The `scrapewheel` command: `run`, `check` and `export`. The only place that turns
//! errors into exit codes: 0 ok, 1 bad config or input, 2 usage.

use clap::{Parser, Subcommand, ValueEnum};
use scrapewheel::agent::{self, Overrides};
use scrapewheel::config::Config;
use scrapewheel::export::{self, ExportFormat, Selector};
use scrapewheel::log::{self, Level};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_CONFIG: &str = "config/scrapewheel.toml";

#[derive(Parser)]
#[command(
    name = "scrapewheel",
    version,
    about = "A small, synchronous Prometheus scrape agent"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "logfmt")]
    log_format: LogFormat,
    /// Lowest level logged.
    #[arg(long, global = true, value_enum, default_value = "info")]
    log_level: LogLevel,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Openmetrics,
    Jsonl,
}

#[derive(Subcommand)]
enum Command {
    /// Scrape targets and spool (and ship) samples until SIGTERM.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Overrides web.listen_address.
        #[arg(long)]
        listen: Option<String>,
        /// Overrides storage.path.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Validate a config file and print a summary.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the samples in the spool.
    Export {
        /// The data directory (storage.path) whose spool is read.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// A series selector, e.g. 'up{job="node"}'; repeat to OR several.
        #[arg(long = "match")]
        matchers: Vec<String>,
        #[arg(long, value_enum, default_value = "openmetrics")]
        format: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.log_level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error => Level::Error,
    };
    log::configure(level, matches!(cli.log_format, LogFormat::Json));
    match cli.command {
        Command::Run {
            config,
            listen,
            data,
        } => {
            let ov = Overrides {
                listen_address: listen,
                data_path: data,
            };
            match agent::run(config, ov) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    scrapewheel::error!("scrapewheel cannot run", err = e);
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { config } => match Config::load(&config) {
            Ok(cfg) => {
                // write!, not println!: a closed pipe (`check | head`) must not panic.
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "{}\nSUCCESS: {} is valid",
                    cfg.summary(),
                    config.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("FAILED: {e}");
                ExitCode::from(1)
            }
        },
        Command::Export {
            data,
            matchers,
            format,
        } => {
            let mut selectors = Vec::new();
            for m in &matchers {
                match Selector::parse(m) {
                    Ok(s) => selectors.push(s),
                    Err(e) => {
                        eprintln!("invalid --match {m:?}: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            let format = match format {
                Format::Openmetrics => ExportFormat::OpenMetrics,
                Format::Jsonl => ExportFormat::Jsonl,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let res = export::export(&agent::spool_dir(&data), &selectors, format, &mut out);
            let flushed = out.flush();
            match (res, flushed) {
                (Ok(_), Ok(())) => ExitCode::SUCCESS,
                (Err(e), _) => {
                    eprintln!("export failed: {e}");
                    ExitCode::from(1)
                }
                (_, Err(e)) => {
                    eprintln!("export failed writing output: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
