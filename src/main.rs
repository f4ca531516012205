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
    /// Compile and lint a policy folder; errors as file:line:column with the source line.
    Check {
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Run the fixtures in DIR/tests and show a diff for every failure. Each fixture runs on
    /// its own calendar (UTC unless it declares `timezone`), never ROLLGATE_TIMEZONE's.
    Test {
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Print the decision and effects a real webhook payload would get; touches no tracker.
    Simulate {
        /// A webhook payload (JSON), e.g. saved from GitHub's "Recent Deliveries".
        #[arg(long)]
        event: PathBuf,
        /// The X-GitHub-Event it was sent with (guessed from the payload when left out).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Policy folder (default: the configured one).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Read the issue's state and history from the configured database, if it exists.
        #[arg(long)]
        with_store: bool,
    },
    /// Run the clock at a given time, as `serve` does every 30 s: fire the timers due by then
    /// and process them, then run the periodic jobs due then (the monthly metrics report, the
    /// week's decisions log, the Tuesday agenda, each filed once per period in
    /// ROLLGATE_REPORTS_TARGET). A time in the future files the periods due by then, and
    /// `serve` will not file them again.
    Sweep {
        /// RFC 3339 time, e.g. 2026-11-27T18:00:00+05:30 (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Show what the due timers and jobs would do; fire nothing, file nothing, change
        /// nothing (no tracker is reached).
        #[arg(long)]
        dry_run: bool,
        /// Only the timers: leave the periodic jobs to `serve`.
        #[arg(long)]
        no_jobs: bool,
    },
    /// Print a month's metrics report (M1-M9) as Markdown; --post files it as an issue (or updates the one filed for that month).
    Report {
        /// The month, e.g. 2026-11 (default: last month).
        #[arg(long)]
        month: Option<String>,
        /// File it in the reports target (ROLLGATE_REPORTS_TARGET: owner/repo or a Jira project).
        #[arg(long)]
        post: bool,
    },
    /// Import existing issues and their history so clocks and reports start right; resumable.
    Backfill {
        /// A GitHub repository, owner/name.
        #[arg(long, required_unless_present = "jira")]
        github: Option<String>,
        /// A Jira project key.
        #[arg(long, conflicts_with = "github")]
        jira: Option<String>,
    },
    /// Check configuration, database, policies, tracker credentials and reachability.
    Doctor,
    /// Prepare a tracker for the playbook: `setup github --repo owner/name` creates or updates
    /// every label of the vocabulary (names, colours, descriptions from the policy pack).
    Setup {
        #[command(subcommand)]
        target: SetupTarget,
    },
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

#[derive(Subcommand)]
enum SetupTarget {
    Github {
        #[arg(long)]
        repo: String,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // One JSON object per line (with the event's span fields) for log shippers; text for people.
    match std::env::var("ROLLGATE_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().with_current_span(true).with_span_list(false).init(),
        Ok("text") | Err(_) => logs.init(),
        Ok(other) => {
            logs.init();
            tracing::warn!(format = other, "ROLLGATE_LOG_FORMAT must be json or text; using text");
        }
    }
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
        Command::Check { dir } => match rollgate::tools::check(&dir) {
            Ok(summary) => println!("{summary}"),
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        Command::Test { dir } => {
            let (report, ok) = match rollgate::tools::test(&dir) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            print!("{report}");
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Simulate { event, event_type, policies, with_store } => {
            let dir = policies.unwrap_or_else(|| settings.policies.clone());
            let set = rollgate::policy::PolicySet::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = if with_store { Some(rollgate::store::open(&settings.database_url).await?) } else { None };
            let config = rollgate::app::policy_config(&settings)?;
            let out = rollgate::tools::simulate(&set, &event, event_type.as_deref(), store.as_deref(), &config, chrono::Utc::now()).await?;
            println!("{out}");
        }
        Command::Sweep { at, dry_run, no_jobs } => {
            let at = match at {
                Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
                    .with_context(|| format!("--at {t:?} is not an RFC 3339 time such as 2026-11-27T18:00:00Z"))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            let (report, ok) = rollgate::tools::sweep(&settings, at, dry_run, !no_jobs).await?;
            print!("{report}");
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Report { month, post } => {
            let calendar = settings.calendar()?;
            let month: rollgate::report::Month = match month {
                Some(m) => m.parse()?,
                None => rollgate::report::Month::of(calendar.local_date(chrono::Utc::now())).prev(),
            };
            let store = rollgate::store::open(&settings.database_url).await?;
            let (title, body) = rollgate::report::monthly(store.as_ref(), &calendar, &settings.policies, month).await?;
            if post {
                let target = settings.reports_target.as_deref().context("--post needs ROLLGATE_REPORTS_TARGET (owner/repo or a Jira project)")?;
                let (trackers, _) = rollgate::app::build_trackers(&settings).await?;
                let (key, new) = rollgate::report::post(&trackers, target, &title, &body).await?;
                println!("{} {} as {}", if new { "filed" } else { "updated the existing" }, title, key.short());
            } else {
                println!("# {title}\n\n{body}");
            }
        }
        Command::Backfill { github, jira } => {
            let set = rollgate::policy::PolicySet::load(&settings.policies).map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = rollgate::store::open(&settings.database_url).await?;
            let retry = rollgate::tracker::RetryPolicy::default();
            let config = rollgate::app::policy_config(&settings)?;
            use rollgate::tracker::Tracker;
            use std::sync::Arc;
            let (what, p) = match (github, jira) {
                (Some(repo), _) => {
                    github_repo(&repo)?;
                    let tracker = rollgate::tracker::github::GithubTracker::from_settings(&settings.github, retry)?
                        .context("backfill reads GitHub: set ROLLGATE_GITHUB_TOKEN or a GitHub App (ROLLGATE_GITHUB_APP_ID and its private key)")?;
                    let me = rollgate::decide::facts::Me::new(Some(tracker.identity().await.context("asking GitHub who rollgate is")?));
                    let tracker = Arc::new(tracker);
                    let roles = rollgate::roles::RoleResolver::new(&settings.roles, Some(tracker.clone() as Arc<dyn Tracker>));
                    let judge = rollgate::backfill::Judge { set: &set, config: &config, roles: &roles, me: &me };
                    (repo.clone(), rollgate::backfill::github(store.as_ref(), &judge, &tracker, &repo, false).await?)
                }
                (None, Some(project)) => {
                    let tracker = rollgate::tracker::jira::JiraTracker::connect(&settings.jira, retry).await.context("backfill reads Jira")?;
                    let me = rollgate::decide::facts::Me::new(Some(tracker.identity().await?));
                    let roles = rollgate::roles::RoleResolver::new(&settings.roles, None);
                    let judge = rollgate::backfill::Judge { set: &set, config: &config, roles: &roles, me: &me };
                    (project.clone(), rollgate::backfill::jira(store.as_ref(), &judge, &tracker, &project, false).await?)
                }
                (None, None) => unreachable!("clap requires one"),
            };
            println!("{what}: {} issue(s) imported ({} history rows), {} already imported before", p.issues, p.rows, p.skipped);
        }
        Command::Setup { target: SetupTarget::Github { repo } } => {
            github_repo(&repo)?;
            let tracker = rollgate::tracker::github::GithubTracker::from_settings(&settings.github, rollgate::tracker::RetryPolicy::default())?
                .context("setup writes labels: set ROLLGATE_GITHUB_TOKEN or a GitHub App (ROLLGATE_GITHUB_APP_ID and its private key)")?;
            let set = rollgate::policy::PolicySet::load(&settings.policies).map_err(|e| anyhow::anyhow!("{e}"))?;
            let (created, updated, same) = tracker.sync_labels(&repo, &set.vocabulary.label_specs()).await?;
            println!("{repo}: {created} label(s) created, {updated} updated, {same} already right");
        }
        Command::Doctor => {
            let (report, ok) = rollgate::doctor::doctor(&settings).await;
            print!("{report}");
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
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

/// A repository named on the command line: refused unless GitHub could have that name, so
/// nothing rollgate stores under it fails to read back (`IssueKey`).
fn github_repo(repo: &str) -> anyhow::Result<()> {
    if !rollgate::model::is_github_repo(repo) {
        anyhow::bail!("{repo:?} is not a GitHub repository name: write owner/name (owner: letters, digits, -; name: letters, digits, . _ -)");
    }
    Ok(())
}
