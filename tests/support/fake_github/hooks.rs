//! The webhooks the fake sends back. Once `deliver_to` names rollgate's webhook URL, every
//! change (hooks are built in world.rs's terms, `Stated`) becomes a signed delivery, built at
//! the moment of the change (its `issue` is the snapshot of that moment) and queued; one
//! background task sends the queue in order, one at a time, and records what rollgate
//! answered. GitHub never retries a failed delivery by itself: a failure is recorded and the
//! next one is sent. Knobs: hold and release in a chosen order, seeded random delays (later
//! deliveries overtake earlier ones), and GitHub's "Redeliver" button.

use super::payloads;
use super::world::{Actor, Key, Stated, World};
use super::{mix64, FakeGithub};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One delivery as sent (or to be sent): what a test asserts on.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Position in the fake's log of deliveries (a redelivery gets its own).
    pub seq: usize,
    /// `X-GitHub-Delivery`: the same for a redelivery of the same change.
    pub id: String,
    pub event: String,
    pub action: String,
    /// The repository and number; empty and 0 for an organisation delivery
    /// (`projects_v2_item`), which names neither.
    pub repo: String,
    pub number: u64,
    /// The organisation of an organisation delivery (`projects_v2_item`).
    pub org: Option<String>,
    pub sender: String,
    /// The label that changed (`labeled`, `unlabeled`).
    pub label: Option<String>,
    /// The comment concerned (`issue_comment`).
    pub comment: Option<u64>,
    pub installation: Option<u64>,
    /// The body as sent (parsed back): the snapshot of the moment of the change.
    pub payload: Value,
    /// What rollgate answered; `None` while not sent, or when no answer came (`error`).
    pub status: Option<u16>,
    pub error: Option<String>,
    pub redelivery: bool,
    /// The delay drawn for it under `delay_deliveries`, once it left the queue.
    pub delay: Option<Duration>,
}

/// The order `release_deliveries` sends what was held in.
pub enum Order {
    /// As the changes happened.
    AsMade,
    Reversed,
    /// Any order: the closure reorders the held deliveries; one it removes is never sent
    /// (a delivery GitHub lost).
    Custom(Reorder),
}

pub type Reorder = Box<dyn FnOnce(&mut Vec<Delivery>) + Send>;

impl Order {
    pub fn custom(f: impl FnOnce(&mut Vec<Delivery>) + Send + 'static) -> Order {
        Order::Custom(Box::new(f))
    }
}

#[derive(Clone)]
struct Target {
    url: String,
    secret: String,
}

#[derive(Default)]
pub(super) struct HookState {
    target: Option<Target>,
    log: Vec<Delivery>,
    bodies: Vec<Arc<Vec<u8>>>,
    /// Waiting to be sent, in order (positions in `log`).
    queue: VecDeque<usize>,
    /// `Some` while held: what is kept back, in the order made.
    held: Option<Vec<usize>>,
    in_flight: usize,
    /// Seeded random delays: (seed, longest delay).
    delay: Option<(u64, Duration)>,
    unlabeled_keeps_label: bool,
    started: bool,
}

#[derive(Default)]
pub(super) struct Hooks {
    state: Mutex<HookState>,
    wake: Notify,
}

/// GitHub's GUIDs are unique across every hook: so are these, in one test process.
fn guid() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (a, b) = (mix64(n ^ 0x5eed), mix64(n.wrapping_add(0x9e37)));
    format!("{:08x}-{:04x}-11eb-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, b >> 48, b & 0xffff_ffff_ffff)
}

const HOOK_ID: u64 = 404_077_313;
const HOOKSHOT: &str = "GitHub-Hookshot/6b2d5e4";

impl FakeGithub {
    /// Switches the loop on: from now on every change is delivered, signed with `secret`, to
    /// `url` (rollgate's `/webhooks/github`). Changes made before are not.
    pub fn deliver_to(&self, url: &str, secret: &str) {
        let start = {
            let mut h = self.hooks.state.lock().unwrap();
            h.target = Some(Target { url: url.to_string(), secret: secret.to_string() });
            !std::mem::replace(&mut h.started, true)
        };
        if start {
            tokio::spawn(send_loop(self.hooks.clone()));
        }
    }

    /// Records `stated` in the timeline (`World::record`), then queues the deliveries
    /// for it, built now from `w` (call with the world locked, right after the change, so the
    /// snapshot is the one of the change and the queue keeps the order the changes were made
    /// in).
    pub(super) fn emit(&self, w: &mut World, key: &Key, actor: &Actor, stated: &[Stated]) {
        w.record(key, actor, stated);
        let w: &World = w;
        let keep_label = {
            let h = self.hooks.state.lock().unwrap();
            if stated.is_empty() || h.target.is_none() {
                return;
            }
            h.unlabeled_keeps_label
        };
        // The App's webhook delivers for the accounts it is installed on.
        let installation = self.installation_for(&key.0);
        for s in stated {
            let mut built = payloads::delivery(w, key, s, actor, installation);
            if let (Stated::Unlabeled(l), true) = (s, keep_label) {
                let gone = payloads::label(w, &key.0, l);
                built.payload["issue"]["labels"].as_array_mut().unwrap().push(gone);
            }
            self.push(Delivery {
                seq: 0,
                id: String::new(),
                event: built.event.into(),
                action: built.action.into(),
                repo: key.0.clone(),
                number: key.1,
                org: None,
                sender: actor.login.clone(),
                label: built.label,
                comment: built.comment,
                installation,
                payload: built.payload,
                status: None,
                error: None,
                redelivery: false,
                delay: None,
            });
        }
        self.hooks.wake.notify_one();
    }

    /// Queues an organisation webhook's delivery (`projects_v2_item`: no repository, no issue),
    /// built now by the caller; `installation` is set when the App is installed on `org`.
    pub(super) fn emit_org(&self, org: &str, event: &'static str, action: &'static str, actor: &Actor, mut payload: Value) {
        if self.hooks.state.lock().unwrap().target.is_none() {
            return;
        }
        let installation = self.installation_for(org);
        match installation {
            Some(id) => payload["installation"] = serde_json::json!({ "id": id, "node_id": format!("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{id}") }),
            None => drop(payload.as_object_mut().map(|o| o.remove("installation"))),
        }
        self.push(Delivery {
            seq: 0,
            id: String::new(),
            event: event.into(),
            action: action.into(),
            repo: String::new(),
            number: 0,
            org: Some(org.to_string()),
            sender: actor.login.clone(),
            label: None,
            comment: None,
            installation,
            payload,
            status: None,
            error: None,
            redelivery: false,
            delay: None,
        });
        self.hooks.wake.notify_one();
    }

    /// Logs `d` (its `seq` and `id` given here) with its body, and queues or holds it.
    fn push(&self, mut d: Delivery) {
        let body = serde_json::to_vec(&d.payload).unwrap();
        let mut h = self.hooks.state.lock().unwrap();
        d.seq = h.log.len();
        d.id = guid();
        let seq = d.seq;
        h.log.push(d);
        h.bodies.push(Arc::new(body));
        match h.held.as_mut() {
            Some(held) => held.push(seq),
            None => h.queue.push_back(seq),
        }
    }

    /// Every delivery so far, in the order made (redeliveries included).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.hooks.state.lock().unwrap().log.clone()
    }

    /// How many deliveries were made so far (cheaper than `deliveries().len()`).
    pub fn delivery_count(&self) -> usize {
        self.hooks.state.lock().unwrap().log.len()
    }

    /// From now on an `unlabeled` delivery's `issue.labels` still lists the removed label, as
    /// real ones sometimes do (DESIGN.md, "Traps already found"); the top-level `label` is
    /// the one that changed.
    pub fn unlabeled_snapshots_keep_the_label(&self, on: bool) {
        self.hooks.state.lock().unwrap().unlabeled_keeps_label = on;
    }

    /// Deliveries waiting to be sent or being sent (held ones are not counted).
    pub fn deliveries_pending(&self) -> usize {
        let h = self.hooks.state.lock().unwrap();
        h.queue.len() + h.in_flight
    }

    /// From now on deliveries are kept until `release_deliveries`.
    pub fn hold_deliveries(&self) {
        self.hooks.state.lock().unwrap().held.get_or_insert_with(Vec::new);
    }

    /// What is held, in the order the changes were made.
    pub fn held_deliveries(&self) -> Vec<Delivery> {
        let h = self.hooks.state.lock().unwrap();
        h.held.iter().flatten().map(|s| h.log[*s].clone()).collect()
    }

    /// Sends what was held, in `order`, and stops holding.
    pub fn release_deliveries(&self, order: Order) {
        let mut h = self.hooks.state.lock().unwrap();
        let mut held: Vec<Delivery> = h.held.take().unwrap_or_default().into_iter().map(|s| h.log[s].clone()).collect();
        match order {
            Order::AsMade => {}
            Order::Reversed => held.reverse(),
            Order::Custom(f) => f(&mut held),
        }
        h.queue.extend(held.iter().map(|d| d.seq));
        drop(h);
        self.hooks.wake.notify_one();
    }

    /// Each delivery from now on waits a pseudo-random time up to `max` (drawn from `seed` and
    /// its position, so a run reproduces), and they go out concurrently: a later one may
    /// overtake an earlier one. `Duration::ZERO` goes back to one at a time, in order.
    pub fn delay_deliveries(&self, seed: u64, max: Duration) {
        self.hooks.state.lock().unwrap().delay = (!max.is_zero()).then_some((seed, max));
    }

    /// GitHub's "Redeliver": the same body again, under the same `X-GitHub-Delivery`.
    pub fn redeliver(&self, delivery_id: &str) {
        let mut h = self.hooks.state.lock().unwrap();
        let first = h.log.iter().position(|d| d.id == delivery_id).unwrap_or_else(|| panic!("no delivery {delivery_id}"));
        let seq = h.log.len();
        let mut again = h.log[first].clone();
        again.seq = seq;
        again.status = None;
        again.error = None;
        again.redelivery = true;
        again.delay = None;
        let body = h.bodies[first].clone();
        h.log.push(again);
        h.bodies.push(body);
        h.queue.push_back(seq);
        drop(h);
        self.hooks.wake.notify_one();
    }

    /// Waits until nothing is waiting or in flight (held deliveries aside); panics after
    /// `within`, naming what is stuck.
    pub async fn deliveries_sent(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.deliveries_pending() > 0 {
            if tokio::time::Instant::now() >= deadline {
                let h = self.hooks.state.lock().unwrap();
                panic!("deliveries still pending after {within:?}: {} queued, {} in flight", h.queue.len(), h.in_flight);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `sha256=` + the hex HMAC-SHA256 of the exact body (computed here, not with rollgate's
/// own code, so the self-test checks one against the other).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Job {
    seq: usize,
    target: Target,
    body: Arc<Vec<u8>>,
    delivery: Delivery,
    delay: Option<Duration>,
}

async fn send_loop(hooks: Arc<Hooks>) {
    // GitHub gives up on a delivery after 10 s.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    loop {
        let job = {
            let mut h = hooks.state.lock().unwrap();
            match (h.queue.pop_front(), h.target.clone()) {
                (Some(seq), Some(target)) => {
                    h.in_flight += 1;
                    let delay = h.delay.map(|(seed, max)| {
                        Duration::from_millis(mix64(seed ^ mix64(seq as u64)) % (max.as_millis() as u64 + 1))
                    });
                    h.log[seq].delay = delay;
                    Some(Job { seq, target, body: h.bodies[seq].clone(), delivery: h.log[seq].clone(), delay })
                }
                _ => None,
            }
        };
        match job {
            None => hooks.wake.notified().await,
            Some(job) if job.delay.is_some() => {
                let (hooks, http) = (hooks.clone(), http.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(job.delay.unwrap()).await;
                    send(&hooks, &http, job).await
                });
            }
            Some(job) => send(&hooks, &http, job).await,
        }
    }
}

async fn send(hooks: &Hooks, http: &reqwest::Client, job: Job) {
    let d = &job.delivery;
    let (target_type, target_id) = match (d.installation, &d.org) {
        (Some(_), _) => ("integration", super::app::APP_ID),
        (None, Some(org)) => ("organization", super::native::org_id(org)),
        (None, None) => ("repository", payloads::repository_id(&d.repo)),
    };
    let answer = http
        .post(&job.target.url)
        .header("content-type", "application/json")
        .header("user-agent", HOOKSHOT)
        .header("x-github-event", &d.event)
        .header("x-github-delivery", &d.id)
        .header("x-github-hook-id", HOOK_ID.to_string())
        .header("x-github-hook-installation-target-type", target_type)
        .header("x-github-hook-installation-target-id", target_id.to_string())
        .header("x-hub-signature-256", signature(&job.target.secret, &job.body))
        .body(job.body.to_vec())
        .send()
        .await;
    let mut h = hooks.state.lock().unwrap();
    let rec = &mut h.log[job.seq];
    match answer {
        Ok(r) => rec.status = Some(r.status().as_u16()),
        Err(e) => rec.error = Some(e.to_string()),
    }
    h.in_flight -= 1;
}
