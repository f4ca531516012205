//! The database becomes unreachable under a running service (PostgreSQL behind a TCP proxy the
//! test cuts): deliveries are refused with 503 and `/readyz` answers 503, each bounded by the
//! store timeout setting instead of the pool's 10 s acquire timeout; when the database is back,
//! the service recovers by itself and every acknowledged or redelivered delivery is processed
//! exactly once.

mod support;

use rollgate::model::IssueKey;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{issue_event, signed, Harness, REPO};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// The client's own limit: an answer must come well before it. The service's bound is the
/// store timeout (1 s here, the default); the pool's acquire timeout it replaces is 10 s.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Lines {
    cut: bool,
    /// Connections being forwarded to PostgreSQL.
    open: Vec<AbortHandle>,
    /// Connections accepted while cut: held, never answered, like a host that is unreachable.
    held: Vec<TcpStream>,
}

/// A TCP proxy in front of PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    lines: Arc<Mutex<Lines>>,
}

impl Proxy {
    async fn start(upstream: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Lines::default()));
        let l = lines.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = l.lock().unwrap();
                if state.cut {
                    state.held.push(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                state.open.push(task.abort_handle());
            }
        });
        Proxy { port, lines }
    }

    /// The database stops answering: open connections are dropped, new ones hang.
    fn cut(&self) {
        let mut state = self.lines.lock().unwrap();
        state.cut = true;
        for task in state.open.drain(..) {
            task.abort();
        }
    }

    /// The database is back: hanging connections fail at once, new ones go through.
    fn restore(&self) {
        let mut state = self.lines.lock().unwrap();
        state.cut = false;
        state.held.clear();
    }
}

/// Sends a signed delivery with the client timeout; status, answer and how long it took.
async fn deliver(h: &Harness, id: &str, n: u64) -> Result<(u16, Value, Duration), String> {
    let (body, sig) = signed(&issue_event("issues.opened.json", n, &[], None));
    let started = Instant::now();
    let r = h
        .http
        .post(format!("{}/webhooks/github", h.url()))
        .header("content-type", "application/json")
        .header("x-github-event", "issues")
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", sig)
        .body(body)
        .timeout(CLIENT_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{id}: no answer within {CLIENT_TIMEOUT:?}: {e}"))?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null), started.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_answered_503_quickly_and_recovery_processes_everything_once() {
    let db = support::fresh_postgres().await;
    let name = db.rsplit('/').next().unwrap().to_string();
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let h = Harness::start_with(|s| {
        s.database_url = format!("{}/{name}", support::POSTGRES.replace(":5432", &format!(":{}", proxy.port)));
        s.http.store_timeout = Duration::from_secs(1); // the default, said here
    })
    .await;
    for n in 1..=6 {
        h.github.seed(REPO, n, &[]);
    }
    for n in 1..=3 {
        let (status, answer, _) = deliver(&h, &format!("d-{n}"), n).await.unwrap();
        assert_eq!(status, 202, "{answer}");
    }
    h.settle().await;

    proxy.cut();
    let mut took = Vec::new();
    for n in 4..=6 {
        let (status, answer, elapsed) = deliver(&h, &format!("d-{n}"), n).await.unwrap();
        assert_eq!(status, 503, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("in time"), "bounded by the store timeout: {answer}");
        took.push(elapsed);
    }
    let started = Instant::now();
    let ready = h.http.get(format!("{}/readyz", h.url())).timeout(CLIENT_TIMEOUT).send().await.expect("/readyz answers during the outage");
    let readyz_took = started.elapsed();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert!(ready["store"].as_str().unwrap().contains("within 1000 ms"), "{ready}");
    eprintln!("outage: deliveries answered 503 after {took:?}; /readyz 503 after {readyz_took:?} (store timeout 1 s)");

    proxy.restore();
    // The tracker redelivers what was refused; the service comes back by itself.
    let deadline = Instant::now() + PATIENCE;
    for n in 4..=6 {
        loop {
            if let Ok((202, answer, _)) = deliver(&h, &format!("d-{n}"), n).await {
                assert!(["queued", "duplicate"].contains(&answer["status"].as_str().unwrap()), "{answer}");
                break;
            }
            assert!(Instant::now() < deadline, "d-{n} was never accepted after the database came back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    support::settle_within(h.app.store.as_ref(), PATIENCE).await;
    let stats = h.app.store.inbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 0), "{stats:?}");
    for n in 1..=6 {
        // The test's own deliveries (the echoes of rollgate's writes come back besides).
        let audit = h.app.store.audit(&IssueKey::github(REPO, n)).await.unwrap();
        let deliveries: Vec<&str> = audit.iter().map(|a| a.delivery.as_str()).filter(|d| d.starts_with("d-")).collect();
        assert_eq!(deliveries, vec![format!("d-{n}")], "issue {n}: processed exactly once");
        assert!(!h.github.labels(REPO, n).is_empty(), "issue {n}: its labels were applied");
    }
    while h.http.get(format!("{}/readyz", h.url())).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "/readyz never became ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.app.stop().await.unwrap();
}
