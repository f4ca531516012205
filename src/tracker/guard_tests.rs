//! The guard's state machines on made-up instants, and the wrapper over an in-memory tracker.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

const S: Duration = Duration::from_secs(1);

fn breaker() -> Breaker {
    Breaker::new(5, Duration::from_secs(30), Duration::from_secs(300))
}

#[test]
fn the_circuit_opens_after_five_failures_in_a_row_and_a_success_resets_the_count() {
    let t0 = Instant::now();
    let mut b = breaker();
    for _ in 0..4 {
        assert_eq!(b.admit(t0), Ok(false));
        assert_eq!(b.record(t0, Health::Down, false), None);
    }
    // One answer in between: the tracker is alive, the count starts again.
    assert_eq!(b.record(t0, Health::Up, false), None);
    for _ in 0..4 {
        b.record(t0, Health::Down, false);
    }
    assert_eq!(b.state, Circuit::Closed { failures: 4 });
    assert_eq!(b.record(t0, Health::Down, false), Some(Circuit::Open { until: t0 + 30 * S }));
    // While open, calls are refused until the cool-down ends, without reaching the tracker.
    assert_eq!(b.admit(t0 + 29 * S), Err(t0 + 30 * S));
    // A call still in flight when it opened changes nothing.
    assert_eq!(b.record(t0 + S, Health::Down, false), None);
}

#[test]
fn half_open_lets_one_probe_through_and_its_answer_closes_or_reopens_with_a_doubled_cooldown() {
    let t0 = Instant::now();
    let mut b = breaker();
    for _ in 0..5 {
        b.record(t0, Health::Down, false);
    }
    let t1 = t0 + 30 * S;
    assert_eq!(b.admit(t1), Ok(true), "the first call after the cool-down is the probe");
    assert_eq!(b.state, Circuit::HalfOpen { probing: true });
    assert_eq!(b.admit(t1), Err(t1 + PROBE_WAIT), "only one probe at a time");
    // The probe fails: open again, twice as long.
    assert_eq!(b.record(t1, Health::Down, true), Some(Circuit::Open { until: t1 + 60 * S }));
    let t2 = t1 + 60 * S;
    assert_eq!(b.admit(t2), Ok(true));
    assert_eq!(b.record(t2, Health::Down, true), Some(Circuit::Open { until: t2 + 120 * S }));
    let t3 = t2 + 120 * S;
    assert_eq!(b.admit(t3), Ok(true));
    assert_eq!(b.record(t3, Health::Down, true), Some(Circuit::Open { until: t3 + 240 * S }));
    let t4 = t3 + 240 * S;
    assert_eq!(b.admit(t4), Ok(true));
    assert_eq!(b.record(t4, Health::Down, true), Some(Circuit::Open { until: t4 + 300 * S }), "capped at five minutes");
    // A probe that never reached the tracker (the budget held it) lets the next call probe.
    let t5 = t4 + 300 * S;
    assert_eq!(b.admit(t5), Ok(true));
    assert_eq!(b.record(t5, Health::Unknown, true), None);
    assert_eq!(b.admit(t5), Ok(true));
    // The probe succeeds: closed, and the next opening starts from 30 s again.
    assert_eq!(b.record(t5, Health::Up, true), Some(Circuit::Closed { failures: 0 }));
    for _ in 0..5 {
        b.record(t5, Health::Down, false);
    }
    assert_eq!(b.state, Circuit::Open { until: t5 + 30 * S });
}

#[test]
fn the_bucket_holds_a_burst_refills_at_the_rate_and_keeps_a_reserve_from_background_work() {
    let t0 = Instant::now();
    // 60 a minute: one a second; a bucket of 8, of which 2 (25%) are kept for interactive work.
    let mut b = Budget::new(60, 8);
    for left in (2..8).rev() {
        assert_eq!(b.try_take("acme", Priority::Background, t0), Ok(left as f64));
    }
    // 2 left: background would eat into the reserve; it is told to come back in a second.
    let wait = b.try_take("acme", Priority::Background, t0).unwrap_err();
    assert!((wait.as_secs_f64() - 1.0).abs() < 0.01, "{wait:?}");
    // Interactive work may take the whole bucket.
    assert_eq!(b.try_take("acme", Priority::Interactive, t0), Ok(1.0));
    assert_eq!(b.try_take("acme", Priority::Interactive, t0), Ok(0.0));
    let wait = b.try_take("acme", Priority::Interactive, t0).unwrap_err();
    assert!((wait.as_secs_f64() - 1.0).abs() < 0.01, "{wait:?}");
    assert_eq!(b.try_take("acme", Priority::Interactive, t0 + S), Ok(0.0), "refilled one a second");
    // Another owner has its own bucket.
    assert_eq!(b.try_take("other", Priority::Background, t0), Ok(7.0));
    // Refill stops at the burst.
    assert_eq!(b.try_take("acme", Priority::Interactive, t0 + 100 * S), Ok(7.0));
    // Lifted budget.
    assert!(Budget::new(0, 0).unlimited());
    // A bucket too small for a reserve still serves background work.
    assert_eq!(Budget::new(1, 1).try_take("acme", Priority::Background, t0), Ok(0.0));
}

#[test]
fn replicas_divide_the_budget_so_together_they_spend_what_one_would() {
    let t0 = Instant::now();
    // 60 a minute and a bucket of 8, between two replicas: 4 each, refilled one per 2 s.
    let mut b = Budget::new(60, 8);
    assert!(b.try_take("acme", Priority::Interactive, t0).is_ok());
    assert!(b.set_share(2));
    assert!(!b.set_share(2), "unchanged");
    // The 7 tokens left are cut to this replica's bucket of 4.
    for left in (0..4).rev() {
        assert_eq!(b.try_take("acme", Priority::Interactive, t0), Ok(left as f64));
    }
    let wait = b.try_take("acme", Priority::Interactive, t0).unwrap_err();
    assert!((wait.as_secs_f64() - 2.0).abs() < 0.01, "half the rate: {wait:?}");
    // Over a minute, two replicas together write what one alone may (60 + their buckets).
    let (mut a, mut c) = (Budget::new(60, 8), Budget::new(60, 8));
    a.set_share(2);
    c.set_share(2);
    let mut taken = 0;
    for ms in (0..60_000).step_by(100) {
        let t = t0 + Duration::from_millis(ms);
        taken += a.try_take("acme", Priority::Interactive, t).is_ok() as u32 + c.try_take("acme", Priority::Interactive, t).is_ok() as u32;
    }
    assert!((60..=69).contains(&taken), "{taken} writes in a minute from two replicas");
    // Back to one replica: the whole budget again (the bucket refills up to 8).
    assert!(a.set_share(1));
    assert_eq!(a.try_take("other", Priority::Interactive, t0), Ok(7.0));
    // Never less than one write in the bucket, however many replicas.
    let mut many = Budget::new(60, 8);
    many.set_share(50);
    assert_eq!(many.try_take("acme", Priority::Interactive, t0), Ok(0.0));
}

#[test]
fn background_writes_yield_to_waiting_interactive_ones() {
    let t0 = Instant::now();
    let mut b = Budget::new(60, 4);
    b.try_take("acme", Priority::Interactive, t0).unwrap();
    b.try_take("acme", Priority::Interactive, t0).unwrap();
    // 2 left, reserve 1: background could take one...
    b.waiting("acme", t0, 1);
    b.waiting("acme", t0, 1);
    // ...but two interactive writes wait: background needs reserve + 1 + 2 = 4.
    let wait = b.try_take("acme", Priority::Background, t0).unwrap_err();
    assert!((wait.as_secs_f64() - 2.0).abs() < 0.01, "{wait:?}");
    assert!(b.try_take("acme", Priority::Interactive, t0).is_ok());
    b.waiting("acme", t0, -1);
    b.waiting("acme", t0, -1);
    assert!(b.try_take("acme", Priority::Background, t0 + 2 * S).is_ok());
}

#[test]
fn a_label_changed_more_than_four_times_in_the_window_is_stopped_until_the_window_passes() {
    let t0 = Instant::now();
    let key = IssueKey::github("acme/app", 7);
    let mut f = Flaps::new(4, Duration::from_secs(600));
    for i in 0..4u64 {
        let at = t0 + 10 * S * i as u32;
        assert_eq!(f.check(&key, "lane/B", at), FlapCheck::Go);
        f.record(&key, "lane/B", true, Some(i as i64), at);
        // The same decision retried (a lost answer) is not another flip.
        f.record(&key, "lane/B", true, Some(i as i64), at + S);
    }
    let t1 = t0 + 40 * S;
    assert_eq!(f.check(&key, "lane/B", t1), FlapCheck::Stopped(true), "the fifth change trips it");
    assert_eq!(f.check(&key, "lane/B", t1 + S), FlapCheck::Stopped(false), "logged and counted once");
    assert_eq!(f.check(&key, "lane/A", t1), FlapCheck::Go, "other labels are not affected");
    assert_eq!(f.check(&IssueKey::github("acme/app", 8), "lane/B", t1), FlapCheck::Go, "nor other issues");
    assert_eq!(f.check(&key, "lane/B", t1 + 599 * S), FlapCheck::Stopped(false));
    assert_eq!(f.check(&key, "lane/B", t1 + 600 * S), FlapCheck::Go, "the window passed");
    // Changes spread over more than the window never trip it.
    let key = IssueKey::github("acme/app", 9);
    for i in 0..10u64 {
        let at = t0 + 200 * S * i as u32;
        assert_eq!(f.check(&key, "x", at), FlapCheck::Go);
        f.record(&key, "x", i % 2 == 0, Some(i as i64), at);
    }
}

/// An in-memory tracker: fails while `failing`, counts the calls that reached it, and keeps
/// the order of the labels added.
#[derive(Default)]
struct Stub {
    failing: std::sync::atomic::AtomicBool,
    calls: AtomicUsize,
    added: Mutex<Vec<String>>,
}

#[async_trait]
impl Tracker for Stub {
    async fn identity(&self) -> TrackerResult<String> {
        Ok("stub[bot]".into())
    }
    async fn get_issue(&self, _: &IssueKey) -> TrackerResult<IssueSnapshot> {
        Err(TrackerError::NotFound)
    }
    async fn list_comments(&self, _: &IssueKey) -> TrackerResult<Vec<Comment>> {
        Ok(Vec::new())
    }
    async fn add_labels(&self, _: &IssueKey, labels: &[String]) -> TrackerResult<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(TrackerError::Transient("503".into()));
        }
        self.added.lock().unwrap().extend(labels.iter().cloned());
        Ok(())
    }
    async fn remove_label(&self, _: &IssueKey, _: &str) -> TrackerResult<()> {
        Ok(())
    }
    async fn create_comment(&self, _: &IssueKey, _: &str) -> TrackerResult<CommentId> {
        Ok(CommentId(1))
    }
    async fn update_comment(&self, _: &IssueKey, _: CommentId, _: &str) -> TrackerResult<()> {
        Ok(())
    }
    async fn set_open(&self, _: &IssueKey, _: bool, _: Option<&str>) -> TrackerResult<()> {
        Ok(())
    }
    async fn is_team_member(&self, _: &str, _: &str, _: &str) -> TrackerResult<bool> {
        Ok(false)
    }
    async fn update_issue_body(&self, _: &IssueKey, _: &str) -> TrackerResult<()> {
        Ok(())
    }
    async fn create_issue(&self, project: &str, _: &str, _: &str, _: &[String]) -> TrackerResult<IssueKey> {
        Ok(IssueKey::github(project, 1))
    }
}

#[tokio::test]
async fn an_open_circuit_fails_fast_as_rate_limited_without_calling_the_tracker() {
    let g = Guarded::new(Stub::default(), "stub", 0);
    g.inner().failing.store(true, Ordering::SeqCst);
    let key = IssueKey::github("acme/app", 1);
    for _ in 0..5 {
        assert!(matches!(g.add_labels(&key, &["a".into()]).await, Err(TrackerError::Transient(_))));
    }
    assert!(matches!(g.circuit(), Circuit::Open { .. }));
    let before = Utc::now();
    match g.add_labels(&key, &["a".into()]).await {
        Err(TrackerError::RateLimited { retry_at }) => {
            let ahead = (retry_at - before).num_seconds();
            assert!((28..=31).contains(&ahead), "retry in about 30 s, got {ahead}");
        }
        other => panic!("expected a fast RateLimited, got {other:?}"),
    }
    assert_eq!(g.inner().calls.load(Ordering::SeqCst), 5, "the sixth call never reached the tracker");
}

#[tokio::test]
async fn a_stopped_label_is_left_out_of_the_call_and_reported_to_the_caller() {
    let g = Guarded::new(Stub::default(), "stub", 0);
    let key = IssueKey::github("acme/app", 2);
    for i in 0..4 {
        let (r, stopped) = watching_flaps(i, g.add_labels(&key, &["lane/B".into()])).await;
        r.unwrap();
        assert!(stopped.is_empty());
    }
    let (r, stopped) = watching_flaps(5, g.add_labels(&key, &["lane/B".into(), "status/planning".into()])).await;
    r.unwrap();
    assert_eq!(stopped, vec!["lane/B".to_string()]);
    let added = g.inner().added.lock().unwrap().clone();
    assert_eq!(added.iter().filter(|l| *l == "lane/B").count(), 4);
    assert_eq!(added.last().map(String::as_str), Some("status/planning"), "the other label still went");
    // A label stopped alone makes no call at all.
    let calls = g.inner().calls.load(Ordering::SeqCst);
    let (r, stopped) = watching_flaps(6, g.add_labels(&key, &["lane/B".into()])).await;
    assert!(r.is_ok() && stopped == vec!["lane/B".to_string()]);
    assert_eq!(g.inner().calls.load(Ordering::SeqCst), calls);
}

#[tokio::test]
async fn waiting_interactive_writes_are_served_before_waiting_background_ones() {
    // 1200 a minute (one token every 50 ms), a bucket of 4.
    let g = Arc::new(Guarded::with_budget(Stub::default(), "stub", 1200, 4));
    let key = IssueKey::github("acme/app", 3);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (g, key) = (g.clone(), key.clone());
        tasks.push(tokio::spawn(with_priority(Priority::Background, async move { g.add_labels(&key, &[format!("bg{i}")]).await })));
    }
    // The background writes have drained the bucket down to the reserve and wait.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..4 {
        let (g, key) = (g.clone(), key.clone());
        tasks.push(tokio::spawn(async move { g.add_labels(&key, &[format!("fg{i}")]).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let added = g.inner().added.lock().unwrap().clone();
    let first_fg = added.iter().position(|l| l.starts_with("fg")).unwrap();
    let last_fg = added.iter().rposition(|l| l.starts_with("fg")).unwrap();
    assert_eq!(last_fg - first_fg, 3, "no background write between the interactive ones: {added:?}");
    assert!(added[last_fg + 1..].iter().filter(|l| l.starts_with("bg")).count() >= 2, "background writes were still waiting: {added:?}");
    assert_eq!(added.len(), 10, "everything was written in the end");
}
