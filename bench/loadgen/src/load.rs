//! The two ways of loading the server. Closed loop (`--max`): C connections, each sends its
//! next delivery as soon as the previous one is answered — the throughput ceiling. Open loop
//! (`--rate`): sends are scheduled on a clock whatever the answers do, and latency is taken
//! from the *scheduled* time, so a stalled server is charged for every delivery it delayed
//! (no coordinated omission).
//!
//! Everything runs on one thread (a current-thread runtime and a LocalSet), so shared state is
//! `Rc<RefCell<_>>` and the generator never takes more than one core.

use crate::body::Signed;
use crate::client::{Conn, DeliveryIds, Target};
use crate::stats::{Latencies, Outcomes};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How long past the end of the run an answer is still waited for.
const GRACE: Duration = Duration::from_secs(10);

pub struct Recorded {
    pub latencies: Latencies,
    /// Open loop only: how late the generator got to each delivery against the schedule
    /// (timer granularity, CPU contention), not counting any wait for a free connection.
    pub send_lag: Latencies,
    pub outcomes: Outcomes,
    /// Deliveries attempted in the measured window (answered or not).
    pub sent: u64,
    /// Open loop: deliveries whose time came but that were still waiting for a free connection
    /// or an answer when the grace period ran out (counted as transport errors too).
    pub unanswered: u64,
}

impl Recorded {
    fn new(expected: usize) -> Recorded {
        Recorded {
            latencies: Latencies::with_capacity(expected),
            send_lag: Latencies::default(),
            outcomes: Outcomes::default(),
            sent: 0,
            unanswered: 0,
        }
    }
}

pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
}

impl Window {
    pub fn new(warmup: Duration, duration: Duration) -> Window {
        let now = Instant::now();
        Window { measure_from: now + warmup, end: now + warmup + duration }
    }
}

/// Closed loop over `connections` keep-alive connections until the window ends.
pub async fn closed(target: Rc<Target>, bodies: Rc<Vec<Signed>>, connections: usize, window: Window, expected: usize) -> Recorded {
    let rec = Rc::new(RefCell::new(Recorded::new(expected)));
    let ids = Rc::new(RefCell::new(DeliveryIds::new()));
    let counter = Rc::new(Cell::new(0usize));
    let window = Rc::new(window);
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (target, bodies, rec, ids, counter, window) = (target.clone(), bodies.clone(), rec.clone(), ids.clone(), counter.clone(), window.clone());
        workers.push(tokio::task::spawn_local(async move {
            let mut conn: Option<Conn> = None;
            while Instant::now() < window.end {
                if conn.is_none() {
                    match target.connect().await {
                        Ok(c) => conn = Some(c),
                        Err(_) => {
                            if Instant::now() >= window.measure_from {
                                rec.borrow_mut().outcomes.transport += 1;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let i = counter.get();
                counter.set(i + 1);
                let req = target.request(&bodies[i % bodies.len()], ids.borrow_mut().next());
                let started = Instant::now();
                let answer = tokio::time::timeout_at((window.end + GRACE).into(), conn.as_mut().expect("connected").send(req)).await;
                let done = Instant::now();
                let measured = started >= window.measure_from;
                let mut r = rec.borrow_mut();
                if measured {
                    r.sent += 1;
                }
                match answer {
                    Ok(Ok((status, body))) => {
                        // Throughput counts answers inside the window only.
                        if measured && done <= window.end {
                            r.latencies.push(done - started);
                            r.outcomes.record(status, &body);
                        }
                    }
                    Ok(Err(_)) | Err(_) => {
                        conn = None;
                        if measured {
                            r.outcomes.transport += 1;
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let out = std::mem::replace(&mut *rec.borrow_mut(), Recorded::new(0));
    out
}

/// One scheduled delivery: `index` (0-based over the whole run, warm-up included) and when it
/// was due.
pub struct Scheduled {
    pub index: u64,
    pub due: Instant,
}

/// What the open loop reports per delivery to a caller that tracks each one (`effect`).
pub type OnAnswer = Rc<dyn Fn(&Scheduled, Option<u16>)>;

/// Open loop at `rate` a second with at most `max_conns` connections (a delivery due while
/// all are busy waits for one, and that wait is part of its latency).
pub async fn open(
    target: Rc<Target>,
    body_for: Rc<dyn Fn(u64) -> Signed>,
    rate: f64,
    max_conns: usize,
    window: Window,
    on_answer: Option<OnAnswer>,
) -> Recorded {
    let expected = (rate * (window.end - window.measure_from).as_secs_f64()) as usize + 16;
    let rec = Rc::new(RefCell::new(Recorded::new(expected)));
    rec.borrow_mut().send_lag = Latencies::with_capacity(expected);
    let ids = Rc::new(RefCell::new(DeliveryIds::new()));
    let idle: Rc<RefCell<Vec<Conn>>> = Rc::default();
    let permits = Rc::new(Semaphore::new(max_conns));
    let in_flight = Rc::new(Cell::new(0usize));
    let all_done = Rc::new(tokio::sync::Notify::new());
    let start = Instant::now();
    let period_ns = 1e9 / rate;
    let deadline = window.end + GRACE;

    for index in 0u64.. {
        let due = start + Duration::from_nanos((index as f64 * period_ns) as u64);
        if due >= window.end {
            break;
        }
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let measured = due >= window.measure_from;
        let (target, body_for, rec, ids, idle, permits, in_flight, all_done, on_answer) = (
            target.clone(),
            body_for.clone(),
            rec.clone(),
            ids.clone(),
            idle.clone(),
            permits.clone(),
            in_flight.clone(),
            all_done.clone(),
            on_answer.clone(),
        );
        in_flight.set(in_flight.get() + 1);
        tokio::task::spawn_local(async move {
            let s = Scheduled { index, due };
            // The generator's own lateness (timer tick, CPU): before any wait for a connection.
            let lag = Instant::now().saturating_duration_since(due);
            let status = tokio::time::timeout_at(deadline.into(), async {
                let _permit = permits.acquire().await.expect("never closed");
                // Not inside the match: the RefCell borrow must end before the await.
                let pooled = idle.borrow_mut().pop();
                let mut conn = match pooled {
                    Some(c) => c,
                    None => target.connect().await.ok()?,
                };
                let req = target.request(&body_for(index), ids.borrow_mut().next());
                let (status, body) = conn.send(req).await.ok()?;
                let done = Instant::now();
                idle.borrow_mut().push(conn);
                Some((status, body, done))
            })
            .await
            .ok()
            .flatten();
            if measured {
                let mut r = rec.borrow_mut();
                r.sent += 1;
                match &status {
                    Some((code, body, done)) => {
                        r.latencies.push(*done - due);
                        r.send_lag.push(lag);
                        r.outcomes.record(*code, body);
                    }
                    None => {
                        r.outcomes.transport += 1;
                        if Instant::now() >= deadline {
                            r.unanswered += 1;
                        }
                    }
                }
            }
            if let Some(f) = &on_answer {
                f(&s, status.as_ref().map(|s| s.0));
            }
            in_flight.set(in_flight.get() - 1);
            if in_flight.get() == 0 {
                all_done.notify_one();
            }
        });
    }
    // notify_one keeps a permit, so a wake between the check and the wait is not lost.
    while in_flight.get() > 0 {
        all_done.notified().await;
    }
    // Drop the idle connections before the caller reads the counts.
    idle.borrow_mut().clear();
    let out = std::mem::replace(&mut *rec.borrow_mut(), Recorded::new(0));
    out
}
