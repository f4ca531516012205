//! The `rollgate` command line. Every subcommand reads the same settings as `serve`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use rollgate::config::Settings;
use rollgate::model::IssueKey;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "rollgate", version, about = "Enforces a rollout playbook on GitHub and Jira issues")]
struct Cli {
    /// Configuration file (default: ./rollgate.toml when present). ROLLGATE_* variables win.
    #[arg(long, global = true, env = "ROLLGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve webhooks and process events (SQLite, ./policies and 127.0.0.1:8080 by default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print what rollgate decided on one issue and why: `rollgate explain owner/repo#12`.
    Explain { issue: String },
    /// List dead letters, or put them back in the inbox: `rollgate replay 12 14` or `--all`.
    Replay {
        /// Inbox ids of dead letters to retry (as listed without arguments).
        ids: Vec<i64>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            tracing::info!(settings = %settings.describe(), "starting");
            let running = rollgate::app::start(settings).await?;
            shutdown_signal().await;
            tracing::info!("shutting down: finishing events in flight");
            running.stop().await?;
        }
        Command::Migrate => {
            rollgate::store::open(&settings.database_url).await?;
            println!("database {} is up to date", settings.database_url.split('@').next_back().unwrap_or(""));
        }
        Command::Explain { issue } => {
            let key: IssueKey = issue.parse()?;
            let store = rollgate::store::open(&settings.database_url).await?;
            print!("{}", rollgate::explain::explain(store.as_ref(), &key).await?);
        }
        Command::Replay { ids, all } => {
            let store = rollgate::store::open(&settings.database_url).await?;
            if ids.is_empty() && !all {
                let dead = store.dead_letters().await?;
                if dead.is_empty() {
                    println!("no dead letters");
                }
                for d in dead {
                    println!(
                        "{:>6}  {}  {}  {}  delivery {}  after {} attempts: {}",
                        d.id,
                        d.received_at.format("%Y-%m-%d %H:%M:%S"),
                        d.issue_key,
                        d.kind,
                        d.delivery,
                        d.attempts,
                        d.last_error
                    );
                }
            } else {
                let n = store.requeue(&ids).await.context("requeueing dead letters")?;
                println!("{n} dead letter(s) back in the inbox; a running `rollgate serve` picks them up");
                if n == 0 && !ids.is_empty() {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
