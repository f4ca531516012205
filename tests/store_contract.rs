//! The store's promises, checked on both backends: SQLite (one process) and PostgreSQL (several
//! replicas). Two `Store`s opened on one database stand for two replicas: each has its own lease
//! owner, exactly as two `rollgate serve` processes do.

mod support;

use chrono::{DateTime, Duration, Utc};
use rollgate::ingest::{github, Parsed};
use rollgate::model::{DeliveryId, Event};
use rollgate::store::{self, Completion, Inserted, Timer};
use rollgate::store::prelude::*;
use rollgate::model::{AuditRecord, LedgerKey, Purpose};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

fn event(number: u64, delivery: &str, at: DateTime<Utc>) -> Event {
    let payload = support::issue_event("issues.opened.json", number, &[], None);
    let body = serde_json::to_vec(&payload).unwrap();
    match github::parse("issues", DeliveryId(delivery.into()), &body, at).unwrap() {
        Parsed::Event(e) => *e,
        _ => panic!("an issues.opened delivery is an event"),
    }
}

fn completion(id: i64, e: &Event, at: DateTime<Utc>) -> Completion {
    Completion {
        inbox_id: id,
        issue: e.issue.key.clone(),
        snapshot: Some(e.issue.clone()),
        bot_comments: Vec::new(),
        history: Vec::new(),
        timers: Vec::new(),
        audit: AuditRecord {
            delivery: e.delivery.to_string(),
            issue_key: e.issue.key.to_string(),
            kind: e.kind.to_string(),
            policy_version: "test".into(),
            decision: serde_json::json!({}),
            effects: serde_json::json!([]),
            dry_run: true,
            attempt: 1,
            eval_us: 0,
            apply_ms: 0,
            total_ms: 0,
            processed_at: at,
        },
        absorbed: Vec::new(),
        revisions: Vec::new(),
    }
}

/// Two handles ("replicas") on one new database of the given kind.
async fn two(kind: &str) -> (Arc<dyn Store>, Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match kind {
        "sqlite" => format!("sqlite://{}", dir.path().join("rollgate.db").display()),
        _ => support::fresh_postgres().await,
    };
    let a = store::open(&url).await.unwrap();
    let b = store::open(&url).await.unwrap();
    (a, b, dir)
}

const LEASE: Duration = Duration::seconds(30);

async fn batches_store_every_delivery_once(kind: &str) {
    let (a, _, _dir) = two(kind).await;
    let now = Utc::now();
    let first = a.enqueue_batch(&[event(1, "d1", now), event(2, "d2", now), event(1, "d1", now)]).await.unwrap();
    assert_eq!(first, vec![Inserted::Queued, Inserted::Queued, Inserted::Duplicate], "{kind}");
    assert_eq!(a.enqueue(&event(2, "d2", now)).await.unwrap(), Inserted::Duplicate, "{kind}");
    assert_eq!(a.inbox_stats().await.unwrap().pending, 2, "{kind}");
}

/// Many workers on two replicas drain 20 issues x 10 events: every event is processed once,
/// and each issue's events in arrival order, whoever takes them.
async fn replicas_share_the_inbox_in_per_issue_order(kind: &str) {
    let (a, b, _dir) = two(kind).await;
    let now = Utc::now();
    let mut events = Vec::new();
    for round in 0..10 {
        for issue in 1..=20u64 {
            events.push(event(issue, &format!("d-{issue}-{round}"), now));
        }
    }
    a.enqueue_batch(&events).await.unwrap();
    let done: Arc<std::sync::Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut workers = Vec::new();
    for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut idle = 0;
            while idle < 20 {
                let items = store.claim(Utc::now(), 3, LEASE).await.unwrap();
                if items.is_empty() {
                    idle += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
                idle = 0;
                for item in items {
                    done.lock().unwrap().push((item.event.issue.key.to_string(), item.id));
                    if n % 2 == 0 {
                        tokio::task::yield_now().await;
                    }
                    store.complete(completion(item.id, &item.event, Utc::now())).await.unwrap();
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let done = done.lock().unwrap().clone();
    assert_eq!(done.len(), 200, "{kind}: every event processed exactly once");
    assert_eq!(done.iter().map(|(_, id)| id).collect::<HashSet<_>>().len(), 200, "{kind}: no event twice");
    let mut per_issue: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (issue, id) in done {
        per_issue.entry(issue).or_default().push(id);
    }
    for (issue, ids) in per_issue {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{kind}: {issue} ran out of order: {ids:?}");
    }
    assert_eq!(a.inbox_stats().await.unwrap().pending, 0);
}

/// A replica that dies holding a lease: the event waits until the lease runs out, then another
/// replica takes it; the dead one's late completion is refused.
async fn a_lease_runs_out_and_the_late_owner_is_fenced(kind: &str) {
    let (a, b, _dir) = two(kind).await;
    let now = Utc::now();
    let e = event(7, "d-7", now);
    a.enqueue(&e).await.unwrap();
    let mine = a.claim(now, 10, LEASE).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert!(b.claim(now + Duration::seconds(29), 10, LEASE).await.unwrap().is_empty(), "{kind}: a live lease is exclusive");
    let entry = LedgerKey { purpose: Purpose::AddLabels, content_hash: "h1".into() };
    a.ledger_add(mine[0].id, &entry, None, now).await.unwrap();
    // A worker still busy renews its lease; only one that stopped loses it.
    a.renew(&[mine[0].id], now + Duration::seconds(40)).await.unwrap();
    assert!(b.claim(now + Duration::seconds(31), 10, LEASE).await.unwrap().is_empty(), "{kind}: a renewed lease holds");
    let later = now + Duration::seconds(41);
    let theirs = b.claim(later, 10, LEASE).await.unwrap();
    assert_eq!(theirs.len(), 1, "{kind}: an expired lease is taken over");
    assert_eq!(theirs[0].id, mine[0].id);
    // The new owner sees what the old one applied, so it does not apply it again.
    let ledger = b.ledger(theirs[0].id).await.unwrap();
    assert!(ledger.contains_key(&entry), "{kind}: {ledger:?}");
    let late = a.complete(completion(mine[0].id, &e, later)).await;
    assert!(late.is_err(), "{kind}: the old owner's completion must be refused");
    b.complete(completion(theirs[0].id, &e, later)).await.unwrap();
    assert!(b.ledger(theirs[0].id).await.unwrap().is_empty(), "{kind}: the ledger is cleared with the completion");
    let stats = a.inbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.done), (0, 1), "{kind}");
    let audit = a.audit(&e.issue.key).await.unwrap();
    assert_eq!(audit.len(), 1, "{kind}");
}

/// A retried head blocks its issue, not the others.
async fn a_retry_holds_back_only_its_issue(kind: &str) {
    let (a, _, _dir) = two(kind).await;
    let now = Utc::now();
    a.enqueue_batch(&[event(1, "a1", now), event(1, "a2", now), event(2, "b1", now)]).await.unwrap();
    let first = a.claim(now, 10, LEASE).await.unwrap();
    assert_eq!(first.len(), 2, "{kind}: one head per issue");
    let one = first.iter().find(|i| i.event.delivery.as_str() == "a1").unwrap();
    a.retry_at(one.id, "tracker down", now + Duration::seconds(60)).await.unwrap();
    let two = first.iter().find(|i| i.event.delivery.as_str() == "b1").unwrap();
    a.complete(completion(two.id, &two.event, now)).await.unwrap();
    assert!(a.claim(now + Duration::seconds(1), 10, LEASE).await.unwrap().is_empty(), "{kind}: a2 waits behind a1");
    let again = a.claim(now + Duration::seconds(61), 10, LEASE).await.unwrap();
    assert_eq!(again.iter().map(|i| i.event.delivery.as_str()).collect::<Vec<_>>(), vec!["a1"], "{kind}");
    assert_eq!(again[0].attempts, 1);
}

/// Timers and periodic jobs race across replicas: each fires or runs once.
async fn timers_and_jobs_happen_once_across_replicas(kind: &str) {
    let (a, b, _dir) = two(kind).await;
    let now = Utc::now();
    let e = event(3, "t-0", now);
    a.enqueue(&e).await.unwrap();
    let item = a.claim(now, 1, LEASE).await.unwrap().remove(0);
    let mut c = completion(item.id, &e, now);
    c.timers = vec![("sla".into(), Some(now + Duration::seconds(10)))];
    a.complete(c).await.unwrap();
    let due = now + Duration::seconds(11);
    let timer = Timer { issue_key: e.issue.key.clone(), purpose: "sla".into(), due_at: now + Duration::seconds(10) };
    let fire = |s: Arc<dyn Store>, n: &'static str| {
        let timer = timer.clone();
        let mut ev = e.clone();
        ev.delivery = DeliveryId(format!("timer-{n}"));
        ev.kind = "timer.sla".into();
        ev.received_at = due;
        async move { s.fire_timer(&timer, &ev).await.unwrap() }
    };
    let (x, y) = tokio::join!(fire(a.clone(), "a"), fire(b.clone(), "b"));
    assert!(x ^ y, "{kind}: exactly one replica fires the timer ({x}, {y})");
    assert_eq!(a.inbox_stats().await.unwrap().pending, 1, "{kind}: one timer event queued");

    let (x, y) = tokio::join!(a.claim_job("metrics-report", "2026-10", due), b.claim_job("metrics-report", "2026-10", due));
    assert!(x.unwrap() ^ y.unwrap(), "{kind}: exactly one replica runs the job");
    assert!(!a.claim_job("metrics-report", "2026-10", due + Duration::minutes(5)).await.unwrap(), "{kind}: a running job is not started again");
    // Its process died: after an hour the run is taken over, once.
    let late = due + store::JOB_STALE + Duration::seconds(1);
    let (x, y) = tokio::join!(a.claim_job("metrics-report", "2026-10", late), b.claim_job("metrics-report", "2026-10", late));
    assert!(x.unwrap() ^ y.unwrap(), "{kind}: a stale run is taken over by exactly one replica");
    a.finish_job("metrics-report", "2026-10", Ok("issue #9"), late).await.unwrap();
    assert!(!b.claim_job("metrics-report", "2026-10", late + store::JOB_STALE * 2).await.unwrap(), "{kind}: a finished job never runs again");
}

/// Replicas count each other by heartbeat (the write budget is divided by the count); one
/// that stops beating drops out after `REPLICA_TTL`. SQLite has one process: always 1.
async fn replicas_count_each_other_by_heartbeat(kind: &str) {
    let (a, b, _dir) = two(kind).await;
    let t0: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
    let want = |n: usize| if kind == "sqlite" { 1 } else { n };
    assert_eq!(a.heartbeat(t0).await.unwrap(), want(1), "{kind}: alone so far");
    assert_eq!(b.heartbeat(t0 + Duration::seconds(1)).await.unwrap(), want(2), "{kind}");
    assert_eq!(a.heartbeat(t0 + Duration::seconds(10)).await.unwrap(), want(2), "{kind}: beating again changes nothing");
    // B stops; once the TTL has passed since its last beat, A is alone again.
    let later = t0 + Duration::seconds(1) + store::REPLICA_TTL + Duration::seconds(1);
    assert_eq!(a.heartbeat(later).await.unwrap(), want(1), "{kind}: a silent replica drops out");
    assert_eq!(b.heartbeat(later).await.unwrap(), want(2), "{kind}: and counts again when it is back");
}

/// A delivery that arrived after a later change of its issue goes first: its event and the
/// head's trade rows, the head's lease is given back, and nothing is lost, doubled or left
/// leased. A reorder against rows that moved on changes nothing.
async fn an_earlier_change_that_arrived_late_trades_places_with_the_head(kind: &str) {
    let (a, b, _dir) = two(kind).await;
    let now = Utc::now();
    a.enqueue_batch(&[event(7, "later-change", now), event(7, "earlier-change", now), event(8, "other", now)]).await.unwrap();
    let items = a.claim(now, 10, LEASE).await.unwrap();
    let head = items.iter().find(|i| i.event.delivery.as_str() == "later-change").unwrap();
    let waiting = a.pending_after(&head.event.issue.key, head.id, 10).await.unwrap();
    assert_eq!(waiting.iter().map(|(_, e)| e.delivery.as_str()).collect::<Vec<_>>(), ["earlier-change"], "{kind}");
    // Another replica cannot trade rows it does not hold.
    assert!(!b.reorder(head.id, waiting[0].0).await.unwrap(), "{kind}: not b's lease");
    assert!(a.reorder(head.id, waiting[0].0).await.unwrap(), "{kind}");
    let next = b.claim(now, 10, LEASE).await.unwrap();
    assert_eq!(next.iter().map(|i| i.event.delivery.as_str()).collect::<Vec<_>>(), ["earlier-change"], "{kind}: the earlier change runs first, in the head's row");
    assert_eq!(next[0].id, head.id, "{kind}");
    b.complete(completion(next[0].id, &next[0].event, now)).await.unwrap();
    let last = b.claim(now, 10, LEASE).await.unwrap();
    assert_eq!(last.iter().map(|i| i.event.delivery.as_str()).collect::<Vec<_>>(), ["later-change"], "{kind}");
    b.complete(completion(last[0].id, &last[0].event, now)).await.unwrap();
    let other = items.iter().find(|i| i.event.delivery.as_str() == "other").unwrap();
    a.complete(completion(other.id, &other.event, now)).await.unwrap();
    let stats = a.inbox_stats().await.unwrap();
    assert_eq!((stats.done, stats.pending), (3, 0), "{kind}");
    // Done rows cannot be traded.
    assert!(!a.reorder(head.id, waiting[0].0).await.unwrap(), "{kind}");
    // A duplicate of a traded delivery is still a duplicate.
    assert_eq!(a.enqueue(&event(7, "earlier-change", now)).await.unwrap(), Inserted::Duplicate, "{kind}");
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name("sqlite").await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name("postgres").await } )* }
    };
}

both!(
    batches_store_every_delivery_once,
    replicas_share_the_inbox_in_per_issue_order,
    a_lease_runs_out_and_the_late_owner_is_fenced,
    a_retry_holds_back_only_its_issue,
    timers_and_jobs_happen_once_across_replicas,
    replicas_count_each_other_by_heartbeat,
    an_earlier_change_that_arrived_late_trades_places_with_the_head,
);

/// SQLite's count of the times a writer started the WAL over, from the WAL file's header
/// (SQLite's file format: the checkpoint sequence number at offset 12, raised at each restart).
/// `None` while there is no whole header to read: a read may meet one being rewritten, and its
/// checksum then tells.
fn wal_restarts_so_far(wal: &std::path::Path) -> Option<u32> {
    use std::io::Read;
    let mut h = [0u8; 32];
    std::fs::File::open(wal).ok()?.read_exact(&mut h).ok()?;
    let be = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().unwrap());
    let magic = be(0);
    if magic & !1 != 0x377f_0682 {
        return None;
    }
    // The header's checksum runs over its first 24 bytes, read in the byte order the magic says.
    let word = |i: usize| if magic & 1 == 1 { be(i) } else { u32::from_le_bytes(h[i..i + 4].try_into().unwrap()) };
    let (mut s0, mut s1) = (0u32, 0u32);
    for i in (0..24).step_by(8) {
        s0 = s0.wrapping_add(word(i)).wrapping_add(s1);
        s1 = s1.wrapping_add(word(i + 4)).wrapping_add(s0);
    }
    (s0 == be(24) && s1 == be(28)).then(|| be(12))
}

/// SQLite: the WAL is copied into the database file beside the writers (no commit pays for a
/// checkpoint), and still started over while writes never pause, so it stays bounded. Four
/// writers keep the database busy back to back, as ingest does under load, and two readers
/// read between them. A writer can start the WAL over only once a checkpoint has copied all of
/// it, which needs the checkpointer's short pass under the write lock: the test waits until
/// SQLite has started the WAL over several times while the writes go on. That is counted by
/// SQLite itself, not measured in bytes or seconds, so a busy machine only makes it slower.
/// (A checkpointer that queued behind the writers like a processing write never got its turn:
/// the WAL was never started over, 101 MB of it for a 3 MB database here, 600 MB in a 10 s
/// burst of the benchmark.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_its_wal_bounded_under_writes_that_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let s = store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    let wal = dir.path().join("wal.db-wal");
    const RESTARTS: u32 = 3;
    // A bound on the work for when the WAL is never started over, not on time: the checkpointer
    // passes four times a second, and three passes take a few thousand rows at most.
    const MAX_ROWS: u64 = 60_000;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (s, next, stop) = (s.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let first = next.fetch_add(64, std::sync::atomic::Ordering::Relaxed);
                    if first >= MAX_ROWS {
                        return;
                    }
                    let batch: Vec<Event> = (first..first + 64).map(|n| event(n % 500 + 1, &format!("w-{n}"), Utc::now())).collect();
                    assert!(s.enqueue_batch(&batch).await.unwrap().iter().all(|i| *i == Inserted::Queued));
                }
            })
        })
        .collect();
    // A reader still on an older snapshot keeps the WAL from being started over.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    s.inbox_stats().await.unwrap();
                }
            })
        })
        .collect();
    let writing = || writers.iter().any(|w| !w.is_finished());
    let mut first = None;
    let mut restarts = 0;
    while restarts < RESTARTS && writing() {
        if let Some(n) = wal_restarts_so_far(&wal) {
            restarts = n.wrapping_sub(*first.get_or_insert(n));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let rows = next.load(std::sync::atomic::Ordering::Relaxed).min(MAX_ROWS);
    let still_writing = writing();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in writers.into_iter().chain(readers) {
        t.await.unwrap();
    }
    eprintln!("the WAL was started over {restarts} times in about {rows} deliveries");
    assert!(
        restarts >= RESTARTS && still_writing,
        "the WAL was started over {restarts} times in about {rows} deliveries written without a pause: \
         the checkpointer never copied all of it (its pass under the write lock did not get its turn)"
    );
}
