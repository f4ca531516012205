//! Slow and greedy clients over real TCP: slowloris heads, bodies sent a byte at a time,
//! kept-alive connections left idle, a declared body over the limit, and stalled unsigned
//! bodies holding the unsigned-bytes budget. Timeouts are set short through the settings; the
//! tests wait for conditions with generous deadlines and never bound how fast the machine is.

mod support;

use serde_json::json;
use std::time::Duration;
use support::{issue_event, signed, Harness, REPO};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Far longer than any timeout the tests set: only a server that never lets go reaches it.
const PATIENCE: Duration = Duration::from_secs(120);

async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.expect("rollgate accepts the connection")
}

/// Reads until the server closes the connection (EOF or reset); what was read, or `None`
/// when it was still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A client that keeps sending `trickle` every `every` and never finishes its request; true
/// when the server closed the connection before `limit`.
async fn trickle_until_dropped(addr: String, start: Vec<u8>, trickle: &'static [u8], every: Duration, limit: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect(&addr).await else { return true };
    let deadline = Instant::now() + limit;
    if s.write_all(&start).await.is_err() {
        return true;
    }
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match tokio::time::timeout(every, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // an answer (408): the close follows
            Err(_) => {
                if s.write_all(trickle).await.is_err() {
                    return true;
                }
            }
        }
    }
    false
}

/// GET /healthz on a new connection; its status, or an error after `limit`.
async fn healthz(url: &str, limit: Duration) -> Result<u16, String> {
    let client = reqwest::Client::builder().timeout(limit).pool_max_idle_per_host(0).build().unwrap();
    client.get(format!("{url}/healthz")).send().await.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}"))
}

/// The service in its own process with a low open-files limit, as in the attack run that
/// found `/healthz` unanswered once 256 descriptors were taken.
struct Limited {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_limited(open_files: u32, extra: &[(&str, &str)]) -> Limited {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {open_files} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_rollgate"))
        .current_dir(dir.path())
        .env_clear()
        .env("ROLLGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", dir.path().join("rollgate.db").display()))
        .env("ROLLGATE_POLICIES", support::policies_dir())
        .env("ROLLGATE_GITHUB_WEBHOOK_SECRET", support::SECRET)
        .env("ROLLGATE_LOG", "error")
        .envs(extra.iter().copied())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh starts rollgate");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + PATIENCE;
    while healthz(&format!("http://{addr}"), Duration::from_secs(5)).await != Ok(200) {
        assert!(Instant::now() < deadline, "rollgate did not start on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Limited { child, addr, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_and_slow_bodies_are_dropped_while_healthz_keeps_answering() {
    // The attack of the security review, scaled to a 256-descriptor process: more slow
    // clients than it has descriptors. Before the limits, accept failed once they were taken,
    // none was ever dropped, and /healthz stopped answering.
    let service = spawn_limited(
        256,
        &[("ROLLGATE_HTTP_HEADER_TIMEOUT_SECS", "2"), ("ROLLGATE_HTTP_BODY_TIMEOUT_SECS", "3"), ("ROLLGATE_HTTP_IDLE_TIMEOUT_SECS", "2")],
    )
    .await;
    let mut clients = Vec::new();
    for i in 0..300 {
        // A head that never ends: one more byte of a header value every 500 ms (hyper's own
        // head-size limit would take days to reach).
        let head = format!("POST /webhooks/github HTTP/1.1\r\nHost: rollgate\r\nX-Slow-{i}: ").into_bytes();
        clients.push(tokio::spawn(trickle_until_dropped(service.addr.clone(), head, b"a", Duration::from_millis(500), PATIENCE)));
    }
    for _ in 0..60 {
        // A complete head, then a body of 1,000 bytes sent one byte every 500 ms.
        let head = b"POST /webhooks/github HTTP/1.1\r\nHost: rollgate\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".to_vec();
        clients.push(tokio::spawn(trickle_until_dropped(service.addr.clone(), head, b" ", Duration::from_millis(500), PATIENCE)));
    }
    // Liveness keeps answering while they all try to hold on.
    let url = format!("http://{}", service.addr);
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(healthz(&url, Duration::from_secs(30)).await, Ok(200), "round {round}: /healthz must answer during the attack");
    }
    let mut dropped = 0;
    for c in clients {
        if c.await.unwrap() {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 360, "every slow client is dropped by the server");
    assert_eq!(healthz(&url, Duration::from_secs(30)).await, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_new_client_takes_the_place_of_the_longest_waiting_slow_client() {
    // Header and body timeouts longer than the test: only the cap's eviction can make room.
    let h = Harness::start_with(|s| {
        s.http.max_connections = 20;
        s.http.header_timeout = Duration::from_secs(600);
        s.http.body_timeout = Duration::from_secs(600);
    })
    .await;
    let mut heads = Vec::new();
    for i in 0..30 {
        let head = format!("GET /healthz HTTP/1.1\r\nHost: rollgate\r\nX-Slow-{i}: ").into_bytes();
        heads.push(tokio::spawn(trickle_until_dropped(h.app.addr.to_string(), head, b"a", Duration::from_millis(300), PATIENCE)));
    }
    // Bodies too: requests whose body never ends hold their slot like a head that never ends.
    for _ in 0..30 {
        let head = b"POST /webhooks/github HTTP/1.1\r\nHost: rollgate\r\nContent-Length: 1000\r\n\r\n{".to_vec();
        heads.push(tokio::spawn(trickle_until_dropped(h.app.addr.to_string(), head, b" ", Duration::from_millis(300), PATIENCE)));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for round in 0..3 {
        assert_eq!(healthz(&h.url(), Duration::from_secs(30)).await, Ok(200), "round {round}: a new client is served at the cap");
    }
    // At most 20 stay open: the others gave way, although their header timeout is far off.
    let deadline = Instant::now() + PATIENCE;
    while heads.iter().filter(|t| t.is_finished()).count() < 40 {
        assert!(Instant::now() < deadline, "the slow heads over the cap were never evicted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.app.stop().await.unwrap();
    for t in heads {
        assert!(t.await.unwrap(), "closed at the latest when the service stops");
    }
}

#[tokio::test]
async fn idle_connections_and_silent_ones_are_closed_after_their_timeouts() {
    let h = Harness::start_with(|s| {
        s.http.header_timeout = Duration::from_secs(1);
        s.http.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = h.app.addr.to_string();
    // Connected, never a byte sent.
    let mut silent = connect(&addr).await;
    // One request answered, then the connection kept alive and left idle.
    let mut idle = connect(&addr).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: rollgate\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(read_until_closed(&mut silent, PATIENCE).await.is_some_and(|b| b.is_empty()), "a silent connection is closed");
    assert!(read_until_closed(&mut idle, PATIENCE).await.is_some(), "an idle kept-alive connection is closed");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_without_being_sent() {
    let h = Harness::start().await;
    for path in ["/webhooks/github", "/webhooks/jira", "/api/v1/evaluate"] {
        let mut s = connect(&h.app.addr.to_string()).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: rollgate\r\nContent-Type: application/json\r\nX-GitHub-Event: issues\r\nContent-Length: {}\r\n\r\n",
            25 * 1024 * 1024 + 1
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // Not one byte of the body is sent: the answer and the close must come anyway.
        let answer = read_until_closed(&mut s, PATIENCE).await.unwrap_or_else(|| panic!("{path}: no answer without the body"));
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(text.to_ascii_lowercase().contains("connection: close"), "{path}: {text}");
    }
    h.settle().await;
    assert_eq!(h.app.store.inbox_stats().await.unwrap().done, 0);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn stalled_unsigned_bodies_cannot_make_rollgate_buffer_more_than_its_budget() {
    const BUDGET: usize = 64 * 1024;
    let h = Harness::start_with(|s| {
        s.http.max_unsigned_bytes = BUDGET;
        s.http.body_timeout = Duration::from_secs(600);
    })
    .await;
    h.github.seed(REPO, 1, &[]);
    let addr = h.app.addr.to_string();
    let free = || async {
        let text = h.http.get(format!("{}/metrics", h.url())).send().await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with("rollgate_http_unsigned_bytes_free")).expect("the gauge is there").to_string();
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as usize
    };
    // An unsigned sender declares 40,000 bytes, sends one, and stalls.
    let mut stalled = connect(&addr).await;
    stalled
        .write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: rollgate\r\nX-GitHub-Event: issues\r\nContent-Length: 40000\r\n\r\n{")
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while free().await != BUDGET - 40_000 {
        assert!(Instant::now() < deadline, "the stalled body never took its share");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A signed delivery of about 30,000 bytes does not fit beside it: refused, not buffered.
    let mut big = issue_event("issues.opened.json", 1, &[], None);
    big["issue"]["body"] = json!("x".repeat(30_000));
    let (body, sig) = signed(&big);
    let (status, answer) = support::send(&h.http, &h.url(), "issues", "d-big", body.clone(), Some(&sig)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("redeliver"), "{answer}");
    // A small one still fits: the budget is a cap, not a stop.
    let (status, _) = h.deliver("issues", "d-small", &issue_event("issues.opened.json", 1, &[], None)).await;
    assert_eq!(status, 202);

    // The stalled sender goes away: its share comes back, and the big delivery is taken.
    drop(stalled);
    while free().await != BUDGET {
        assert!(Instant::now() < deadline, "the share of a closed connection was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, answer) = support::send(&h.http, &h.url(), "issues", "d-big", body, Some(&sig)).await;
    assert_eq!(status, 202, "{answer}");
    h.settle().await;
    h.app.stop().await.unwrap();
}
