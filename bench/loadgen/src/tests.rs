//! The generator against its own sink and fake, over real loopback HTTP.

use crate::body::Template;
use crate::client::Target;
use crate::fake_github::{self, Fake, Seed};
use crate::ingest::{self, Mode};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/github/issues.opened.json")
}

async fn sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/github", listener.local_addr().unwrap());
    tokio::task::spawn_local(crate::sink::serve(listener));
    url
}

fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

#[test]
fn open_loop_keeps_its_rate_and_counts_every_answer() {
    local(async {
        let url = sink().await;
        let out = ingest::run(ingest::Options {
            target: Target::parse(&url).unwrap(),
            template: Template::load(&fixture(), "s").unwrap(),
            issues: 10,
            first_issue: 1,
            mode: Mode::Rate { rate: 400.0, connections: 16 },
            warmup: Duration::from_millis(200),
            duration: Duration::from_secs(1),
        })
        .await;
        // 400/s for 1 s after the warm-up: the schedule decides, not the answers.
        assert_eq!(out["sent"], 400, "{out}");
        assert_eq!(out["outcomes"]["queued"], 400, "{out}");
        assert_eq!(out["errors"], 0, "{out}");
        assert!(out["ack_ms"]["p99"].as_f64().unwrap() > 0.0, "{out}");
        assert!(out["loadgen_cpu_pct"].as_f64().is_some(), "{out}");
    });
}

#[test]
fn closed_loop_reports_throughput() {
    local(async {
        let url = sink().await;
        let out = ingest::run(ingest::Options {
            target: Target::parse(&url).unwrap(),
            template: Template::load(&fixture(), "s").unwrap(),
            issues: 3,
            first_issue: 1,
            mode: Mode::Max { connections: 4 },
            warmup: Duration::ZERO,
            duration: Duration::from_millis(500),
        })
        .await;
        assert!(out["throughput_per_s"].as_f64().unwrap() > 100.0, "{out}");
        assert_eq!(out["accepted"], out["outcomes"]["queued"], "{out}");
        assert_eq!(out["body_bytes"], std::fs::read(fixture()).unwrap().len(), "{out}");
    });
}

/// A raw HTTP/1.1 exchange, so the fake is checked independently of the generator's client.
async fn call(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text[9..12].parse().unwrap();
    let json = text.split_once("\r\n\r\n").map(|(_, b)| serde_json::from_str(b).unwrap_or_default()).unwrap_or_default();
    (status, json)
}

#[test]
fn fake_github_keeps_issue_state_and_last_call_times() {
    local(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fake = Fake::new(Seed::from_fixture(&fixture()).unwrap());
        tokio::task::spawn_local(fake_github::serve(listener, fake.clone()));

        let (status, _) = call(&addr, "POST", "/repos/o/r/issues/7/labels", r#"{"labels":["lane/B"]}"#).await;
        assert_eq!(status, 200);
        let (status, comment) = call(&addr, "POST", "/repos/o/r/issues/7/comments", r#"{"body":"<!-- rollgate:checklist -->"}"#).await;
        assert_eq!(status, 201);
        let id = comment["id"].as_u64().unwrap();
        assert_eq!(call(&addr, "PATCH", &format!("/repos/o/r/issues/comments/{id}"), r#"{"body":"edited"}"#).await.0, 200);
        let (_, comments) = call(&addr, "GET", "/repos/o/r/issues/7/comments?per_page=100&page=1", "").await;
        assert_eq!(comments[0]["body"], "edited");
        assert_eq!(call(&addr, "DELETE", "/repos/o/r/issues/7/labels/lane%2FB", "").await.0, 200);
        let (_, issue) = call(&addr, "GET", "/repos/o/r/issues/7", "").await;
        // The fixture's issue carries the `bug` label; `lane/B` came and went.
        assert_eq!(issue["labels"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect::<Vec<_>>(), ["bug"]);
        assert_eq!(issue["number"], 7);
        assert_eq!(call(&addr, "GET", "/orgs/o/teams/t/memberships/u", "").await.0, 404);
        assert_eq!(call(&addr, "GET", "/nothing/here", "").await.0, 404);

        assert!(fake.issue_last_call(7).is_some());
        assert!(fake.issue_last_call(8).is_none());
        let report = fake.report();
        assert_eq!(report["calls"], 8);
        assert!(report["last_call_unix_us"]["7"].as_u64().unwrap() > 1_700_000_000_000_000);
        assert_eq!(report["unknown_routes"]["GET /nothing/here"], 1);
    });
}
