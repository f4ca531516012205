//! A fake GitHub REST API with just the routes rollgate's tracker calls (src/tracker/github.rs):
//! issues, their labels and comments in memory, plausible JSON back, and for every issue the
//! time of the last call that touched it — the moment rollgate's effect for it was complete.
//!
//! Issues are keyed by number only (the benchmark drives one repository). An issue never seen
//! starts as the fixture's issue (title, labels, author) when one is given, else empty and open.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

const BOT_LOGIN: &str = "rollgate[bot]";

struct Issue {
    title: String,
    body: String,
    author: String,
    labels: Vec<String>,
    open: bool,
    state_reason: Option<String>,
    comments: Vec<(u64, String)>,
    last_call: Instant,
}

/// What a fresh issue looks like: the webhook fixture's issue.
#[derive(Clone, Default)]
pub struct Seed {
    title: String,
    author: String,
    labels: Vec<String>,
}

impl Seed {
    pub fn from_fixture(path: &std::path::Path) -> Result<Seed, String> {
        let v: Value = serde_json::from_slice(&std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let issue = &v["issue"];
        Ok(Seed {
            title: issue["title"].as_str().unwrap_or("").to_string(),
            author: issue["user"]["login"].as_str().unwrap_or("someone").to_string(),
            labels: issue["labels"].as_array().into_iter().flatten().filter_map(|l| l["name"].as_str().map(String::from)).collect(),
        })
    }
}

pub struct Fake {
    seed: Seed,
    /// Wall clock at `started`, to report last-call times as Unix time to other processes.
    started: (Instant, SystemTime),
    issues: RefCell<HashMap<u64, Issue>>,
    comment_owner: RefCell<HashMap<u64, u64>>,
    next_comment: Cell<u64>,
    next_issue: Cell<u64>,
    calls: Cell<u64>,
    last_call: Cell<Option<Instant>>,
    /// Calls by route, e.g. `POST /repos/:o/:r/issues/:n/labels`.
    routes: RefCell<BTreeMap<&'static str, u64>>,
    /// Requests no route matched, by method and path: a sign rollgate calls something new.
    unknown: RefCell<BTreeMap<String, u64>>,
}

impl Fake {
    pub fn new(seed: Seed) -> Rc<Fake> {
        Rc::new(Fake {
            seed,
            started: (Instant::now(), SystemTime::now()),
            issues: RefCell::default(),
            comment_owner: RefCell::default(),
            next_comment: Cell::new(1_000_000),
            next_issue: Cell::new(900_000_000),
            calls: Cell::new(0),
            last_call: Cell::new(None),
            routes: RefCell::default(),
            unknown: RefCell::default(),
        })
    }

    /// When the fake last answered anything.
    pub fn last_call(&self) -> Option<Instant> {
        self.last_call.get()
    }

    /// When issue `n` last got a call.
    pub fn issue_last_call(&self, n: u64) -> Option<Instant> {
        self.issues.borrow().get(&n).map(|i| i.last_call)
    }

    pub fn calls(&self) -> u64 {
        self.calls.get()
    }

    pub fn report(&self) -> Value {
        let to_unix_us = |t: Instant| {
            let wall = self.started.1 + (t - self.started.0);
            wall.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
        };
        let issues = self.issues.borrow();
        let mut last: Vec<(u64, u64)> = issues.iter().map(|(n, i)| (*n, to_unix_us(i.last_call))).collect();
        last.sort_unstable();
        json!({
            "calls": self.calls.get(),
            "issues": issues.len(),
            "routes": self.routes.borrow().iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "unknown_routes": self.unknown.borrow().iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "last_call_unix_us": last.into_iter().map(|(n, t)| (n.to_string(), json!(t))).collect::<serde_json::Map<_, _>>(),
        })
    }

    pub fn routes_json(&self) -> Value {
        json!({
            "routes": self.routes.borrow().iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "unknown_routes": self.unknown.borrow().iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }

    fn touch(&self, n: u64, now: Instant) -> std::cell::RefMut<'_, Issue> {
        let mut issues = self.issues.borrow_mut();
        let issue = issues.entry(n).or_insert_with(|| Issue {
            title: if self.seed.title.is_empty() { format!("issue {n}") } else { self.seed.title.clone() },
            body: String::new(),
            author: if self.seed.author.is_empty() { "someone".into() } else { self.seed.author.clone() },
            labels: self.seed.labels.clone(),
            open: true,
            state_reason: None,
            comments: Vec::new(),
            last_call: now,
        });
        issue.last_call = now;
        std::cell::RefMut::map(issues, |m| m.get_mut(&n).expect("just inserted"))
    }

    fn count(&self, route: &'static str) {
        *self.routes.borrow_mut().entry(route).or_default() += 1;
    }

    async fn handle(self: Rc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let now = Instant::now();
        self.calls.set(self.calls.get() + 1);
        self.last_call.set(Some(now));
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return answer(StatusCode::BAD_REQUEST, json!({ "message": "unreadable body" })),
        };
        let input: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let num = |s: &str| s.parse::<u64>().ok();
        match (&method, segs.as_slice()) {
            (&Method::GET, ["user"]) => {
                self.count("GET /user");
                answer(StatusCode::OK, json!({ "login": BOT_LOGIN, "type": "Bot" }))
            }
            (&Method::GET, ["orgs", _, "teams", _, "memberships", _]) => {
                self.count("GET /orgs/:org/teams/:team/memberships/:user");
                answer(StatusCode::NOT_FOUND, json!({ "message": "Not Found" }))
            }
            (&Method::GET, ["repos", _, _, "labels"]) => {
                self.count("GET /repos/:o/:r/labels");
                answer(StatusCode::OK, json!([]))
            }
            (&Method::POST, ["repos", _, _, "labels"]) => {
                self.count("POST /repos/:o/:r/labels");
                answer(StatusCode::CREATED, json!({ "name": input["name"], "color": input["color"], "description": input["description"] }))
            }
            (&Method::PATCH, ["repos", _, _, "labels", name]) => {
                self.count("PATCH /repos/:o/:r/labels/:name");
                answer(StatusCode::OK, json!({ "name": decode(name), "color": input["color"], "description": input["description"] }))
            }
            (&Method::GET, ["repos", _, _, "issues"]) => {
                self.count("GET /repos/:o/:r/issues");
                answer(StatusCode::OK, json!([]))
            }
            (&Method::POST, ["repos", o, r, "issues"]) => {
                self.count("POST /repos/:o/:r/issues");
                let n = self.next_issue.get();
                self.next_issue.set(n + 1);
                let mut i = self.touch(n, now);
                i.title = input["title"].as_str().unwrap_or("").into();
                i.body = input["body"].as_str().unwrap_or("").into();
                i.labels = input["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(String::from)).collect();
                answer(StatusCode::CREATED, issue_json(&format!("{o}/{r}"), n, &i))
            }
            (&Method::POST | &Method::PATCH, ["repos", _, _, "issues", "comments", id]) => {
                self.count("PATCH /repos/:o/:r/issues/comments/:id");
                let Some(id) = num(id) else { return not_found() };
                let Some(n) = self.comment_owner.borrow().get(&id).copied() else { return not_found() };
                let mut i = self.touch(n, now);
                let text = input["body"].as_str().unwrap_or("").to_string();
                match i.comments.iter_mut().find(|c| c.0 == id) {
                    Some(c) => {
                        c.1 = text;
                        answer(StatusCode::OK, comment_json(id, &c.1))
                    }
                    None => not_found(),
                }
            }
            (&Method::GET, ["repos", o, r, "issues", n]) => {
                self.count("GET /repos/:o/:r/issues/:n");
                let Some(n) = num(n) else { return not_found() };
                let i = self.touch(n, now);
                answer(StatusCode::OK, issue_json(&format!("{o}/{r}"), n, &i))
            }
            (&Method::PATCH, ["repos", o, r, "issues", n]) => {
                self.count("PATCH /repos/:o/:r/issues/:n");
                let Some(n) = num(n) else { return not_found() };
                let mut i = self.touch(n, now);
                if let Some(state) = input["state"].as_str() {
                    i.open = state == "open";
                    i.state_reason = input["state_reason"].as_str().map(String::from);
                }
                if let Some(b) = input["body"].as_str() {
                    i.body = b.to_string();
                }
                answer(StatusCode::OK, issue_json(&format!("{o}/{r}"), n, &i))
            }
            (&Method::GET, ["repos", _, _, "issues", n, "events"]) => {
                self.count("GET /repos/:o/:r/issues/:n/events");
                let Some(n) = num(n) else { return not_found() };
                self.touch(n, now);
                answer(StatusCode::OK, json!([]))
            }
            (&Method::GET, ["repos", _, _, "issues", n, "comments"]) => {
                self.count("GET /repos/:o/:r/issues/:n/comments");
                let Some(n) = num(n) else { return not_found() };
                let (per, page) = paging(&query);
                let i = self.touch(n, now);
                let items: Vec<Value> = i.comments.iter().skip((page - 1) * per).take(per).map(|(id, b)| comment_json(*id, b)).collect();
                answer(StatusCode::OK, Value::Array(items))
            }
            (&Method::POST, ["repos", _, _, "issues", n, "comments"]) => {
                self.count("POST /repos/:o/:r/issues/:n/comments");
                let Some(n) = num(n) else { return not_found() };
                let id = self.next_comment.get();
                self.next_comment.set(id + 1);
                self.comment_owner.borrow_mut().insert(id, n);
                let text = input["body"].as_str().unwrap_or("").to_string();
                let out = comment_json(id, &text);
                self.touch(n, now).comments.push((id, text));
                answer(StatusCode::CREATED, out)
            }
            (&Method::POST, ["repos", _, _, "issues", n, "labels"]) => {
                self.count("POST /repos/:o/:r/issues/:n/labels");
                let Some(n) = num(n) else { return not_found() };
                let mut i = self.touch(n, now);
                for l in input["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str()) {
                    if !i.labels.iter().any(|x| x == l) {
                        i.labels.push(l.to_string());
                    }
                }
                answer(StatusCode::OK, labels_json(&i.labels))
            }
            (&Method::DELETE, ["repos", _, _, "issues", n, "labels", name]) => {
                self.count("DELETE /repos/:o/:r/issues/:n/labels/:name");
                let Some(n) = num(n) else { return not_found() };
                let name = decode(name);
                let mut i = self.touch(n, now);
                let before = i.labels.len();
                i.labels.retain(|l| *l != name);
                if i.labels.len() == before {
                    return answer(StatusCode::NOT_FOUND, json!({ "message": "Label does not exist" }));
                }
                answer(StatusCode::OK, labels_json(&i.labels))
            }
            _ => {
                *self.unknown.borrow_mut().entry(format!("{method} {path}")).or_default() += 1;
                not_found()
            }
        }
    }
}

/// Serves the fake on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, fake: Rc<Fake>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let fake = fake.clone();
        tokio::task::spawn_local(async move {
            let service = hyper::service::service_fn(move |req| {
                let fake = fake.clone();
                async move { Ok::<_, std::convert::Infallible>(fake.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json; charset=utf-8"));
    // rollgate's retry loop reads the rate-limit headers; a healthy budget keeps it from waiting.
    r.headers_mut().insert("x-ratelimit-remaining", hyper::header::HeaderValue::from_static("4999"));
    r
}

fn not_found() -> Response<Full<Bytes>> {
    answer(StatusCode::NOT_FOUND, json!({ "message": "Not Found" }))
}

fn issue_json(repo: &str, n: u64, i: &Issue) -> Value {
    json!({
        "number": n,
        "title": i.title,
        "body": i.body,
        "html_url": format!("https://github.com/{repo}/issues/{n}"),
        "url": format!("https://api.github.com/repos/{repo}/issues/{n}"),
        "state": if i.open { "open" } else { "closed" },
        "state_reason": i.state_reason,
        "user": { "login": i.author, "type": "User" },
        "labels": labels_json(&i.labels),
        "assignees": [],
        "comments": i.comments.len(),
        "created_at": "2026-11-02T09:00:00Z",
        "updated_at": "2026-11-02T09:00:00Z",
        "closed_at": null,
    })
}

fn labels_json(labels: &[String]) -> Value {
    Value::Array(labels.iter().map(|l| json!({ "name": l, "color": "ededed", "default": false })).collect())
}

fn comment_json(id: u64, body: &str) -> Value {
    json!({ "id": id, "body": body, "user": { "login": BOT_LOGIN, "type": "Bot" }, "created_at": "2026-11-02T09:00:00Z" })
}

/// `per_page` (default 30, at most 100) and `page` (from 1) from a query string.
fn paging(query: &str) -> (usize, usize) {
    let get = |k: &str| query.split('&').filter_map(|p| p.split_once('=')).find(|(n, _)| *n == k).and_then(|(_, v)| v.parse::<usize>().ok());
    (get("per_page").unwrap_or(30).clamp(1, 100), get("page").unwrap_or(1).max(1))
}

/// Percent-decoding of one path segment (`lane%2FB` is the label `lane/B`).
fn decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_label_segments() {
        assert_eq!(decode("lane%2FB"), "lane/B");
        assert_eq!(decode("needs%20review"), "needs review");
        assert_eq!(decode("100%"), "100%");
    }
}
