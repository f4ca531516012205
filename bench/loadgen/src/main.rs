//! Load generator for rollgate's webhook ingest benchmarks (driven by bench/ingest.sh).
//!
//! Every subcommand runs on one thread (a current-thread tokio runtime): on a 2-core machine the
//! server under test must get as much CPU as possible, and the generator reports its own share.
//! Results: one JSON line on stdout, one human line on stderr.

mod body;
mod client;
mod effect;
mod fake_github;
mod ingest;
mod load;
mod sink;
mod stats;
mod summarize;
#[cfg(test)]
mod tests;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "loadgen", about = "Signed GitHub deliveries at rollgate, a fake GitHub, a sink; see bench/README.md")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Delivery {
    /// rollgate's GitHub webhook URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/github")]
    url: String,
    /// The webhook secret rollgate verifies (ROLLGATE_GITHUB_WEBHOOK_SECRET).
    #[arg(long)]
    secret: String,
    /// A GitHub `issues` webhook payload; only issue.number is rewritten.
    #[arg(long, default_value = "tests/fixtures/github/issues.opened.json")]
    fixture: PathBuf,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// `key=value` copied into the JSON summary (bench/ingest.sh joins lines on store/test/run).
    #[arg(long = "label")]
    labels: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Webhook ingest: closed loop (--max) for throughput, open loop (--rate) for ack latency.
    Ingest {
        #[command(flatten)]
        d: Delivery,
        /// Distinct issue numbers (one pre-signed body each), sent round-robin.
        #[arg(long, default_value_t = 1000)]
        issues: u64,
        /// First issue number (the others follow it).
        #[arg(long, default_value_t = 1_000_000)]
        first_issue: u64,
        /// Closed loop: each connection sends again as soon as it is answered.
        #[arg(long, conflicts_with = "rate", requires = "connections")]
        max: bool,
        /// Open loop: deliveries a second, on a clock independent of the answers.
        #[arg(long, required_unless_present = "max")]
        rate: Option<f64>,
        /// Connections: exactly this many with --max; at most this many with --rate (default 256).
        #[arg(long)]
        connections: Option<usize>,
        /// Seconds of the same load before measuring starts.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
    },
    /// Delivery-to-effect: a fake GitHub in this process plus an open-loop sender, one fresh
    /// issue per delivery; reports (last tracker call for the issue − send time).
    Effect {
        #[command(flatten)]
        d: Delivery,
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Address for the fake GitHub (rollgate's ROLLGATE_GITHUB_API_URL points here).
        #[arg(long)]
        fake: String,
        /// Most connections to rollgate at once.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// First issue number (default: derived from the clock, so reruns on one database
        /// always use issues rollgate has not seen).
        #[arg(long)]
        first_issue: Option<u64>,
        /// rollgate is done when the fake has had no call for this many seconds.
        #[arg(long, default_value_t = 2.0)]
        idle: f64,
        /// Give up waiting for quiet after this many seconds past the last send.
        #[arg(long, default_value_t = 120.0)]
        max_wait: f64,
    },
    /// Only the fake GitHub, until stopped or until it has been idle.
    FakeGithub {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
        /// Fresh issues start as this payload's issue (title, labels, author).
        #[arg(long)]
        fixture: Option<PathBuf>,
        /// After the first call, once no call came for SECS: print per-issue last-call times
        /// (Unix microseconds) as JSON and exit.
        #[arg(long)]
        report_after_idle: Option<f64>,
        /// Write that report to this file instead of stdout.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// A server answering 202 to everything after reading the body: the generator's ceiling.
    Sink {
        #[arg(long, default_value = "127.0.0.1:9099")]
        listen: String,
    },
    /// Print a free loopback TCP port (for scripts).
    FreePort,
    /// Markdown table (medians and every run) from a results file of JSON lines.
    Summarize { results: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("listening on {addr}: {e}"))
}

fn emit(mut summary: Value, labels: &[String], human: String) {
    if let Value::Object(m) = &mut summary {
        m.extend(stats::labels(labels));
    }
    println!("{summary}");
    eprintln!("{human}");
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Ingest { d, issues, first_issue, max, rate, connections, warmup } => {
            let mode = match (max, rate) {
                (true, _) => ingest::Mode::Max { connections: connections.unwrap_or(32) },
                (false, Some(rate)) if rate > 0.0 => ingest::Mode::Rate { rate, connections: connections.unwrap_or(256) },
                _ => return Err("give --max --connections C or --rate R (> 0)".into()),
            };
            let template = body::Template::load(&d.fixture, &d.secret)?;
            let target = client::Target::parse(&d.url)?;
            // Fail fast on a server that is not there, rather than counting 20 s of errors.
            target.connect().await.map_err(|e| format!("{}: {e}", d.url))?;
            let summary = ingest::run(ingest::Options {
                target,
                template,
                issues,
                first_issue,
                mode,
                warmup: secs(warmup),
                duration: secs(d.duration),
            })
            .await;
            let human = match summary["mode"].as_str() {
                Some("max") => format!(
                    "ingest max: {} accepted/s over {} s ({} sent, {} errors), ack p50 {} ms p99 {} ms; loadgen CPU {}% of a core",
                    summary["throughput_per_s"], summary["duration_s"], summary["sent"], summary["errors"],
                    summary["ack_ms"]["p50"], summary["ack_ms"]["p99"], summary["loadgen_cpu_pct"]
                ),
                _ => format!(
                    "ingest rate {}/s (achieved {}): ack p50 {} ms p90 {} ms p99 {} ms max {} ms, send lag p99 {} ms, {} errors; loadgen CPU {}% of a core",
                    summary["rate_target"], summary["rate_achieved"], summary["ack_ms"]["p50"], summary["ack_ms"]["p90"],
                    summary["ack_ms"]["p99"], summary["ack_ms"]["max"], summary["send_lag_ms"]["p99"], summary["errors"],
                    summary["loadgen_cpu_pct"]
                ),
            };
            emit(summary, &d.labels, human);
        }
        Command::Effect { d, rate, fake, connections, first_issue, idle, max_wait } => {
            let template = body::Template::load(&d.fixture, &d.secret)?;
            let target = client::Target::parse(&d.url)?;
            let fake_state = fake_github::Fake::new(fake_github::Seed::from_fixture(&d.fixture)?);
            tokio::task::spawn_local(fake_github::serve(bind(&fake).await?, fake_state.clone()));
            target.connect().await.map_err(|e| format!("{}: {e}", d.url))?;
            // Seconds since the epoch × 10,000: runs started at least a second apart, each of at
            // most 10,000 deliveries, never share an issue number.
            let first_issue = first_issue.unwrap_or_else(|| {
                let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
                (s % 100_000_000) * 10_000
            });
            let summary = effect::run(effect::Options {
                target,
                template,
                fake: fake_state,
                rate,
                duration: secs(d.duration),
                connections,
                first_issue,
                idle: secs(idle),
                max_wait: secs(max_wait),
            })
            .await;
            let human = format!(
                "effect at {}/s: delivery-to-last-tracker-call p50 {} ms p99 {} ms max {} ms; {} of {} acknowledged deliveries got no tracker call; {} tracker calls/delivery; ack p99 {} ms; {} errors",
                summary["rate_target"], summary["effect_ms"]["p50"], summary["effect_ms"]["p99"], summary["effect_ms"]["max"],
                summary["without_tracker_call"], summary["acked"], summary["tracker_calls_per_delivery"], summary["ack_ms"]["p99"], summary["errors"]
            );
            emit(summary, &d.labels, human);
        }
        Command::FakeGithub { listen, fixture, report_after_idle, report } => {
            let seed = match &fixture {
                Some(p) => fake_github::Seed::from_fixture(p)?,
                None => fake_github::Seed::default(),
            };
            let fake = fake_github::Fake::new(seed);
            tokio::task::spawn_local(fake_github::serve(bind(&listen).await?, fake.clone()));
            eprintln!("fake GitHub on http://{listen}");
            let Some(idle) = report_after_idle.map(secs) else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if fake.last_call().is_some_and(|t| Instant::now() - t >= idle) {
                    break;
                }
            }
            let text = fake.report().to_string();
            match report {
                Some(path) => std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?,
                None => println!("{text}"),
            }
        }
        Command::Sink { listen } => {
            let listener = bind(&listen).await?;
            eprintln!("sink on http://{listen}");
            sink::serve(listener).await;
        }
        Command::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            println!("{}", l.local_addr().map_err(|e| e.to_string())?.port());
        }
        Command::Summarize { results } => {
            let text = std::fs::read_to_string(&results).map_err(|e| format!("{}: {e}", results.display()))?;
            print!("{}", summarize::table(&text)?);
        }
    }
    Ok(())
}
