//! The HTTP/1 server: our own accept loop over hyper, because `axum::serve` has no timeouts and
//! no connection cap. A connection here is bounded three ways:
//!
//! - **header timeout**: from its accept (first request) or from the first byte of a later
//!   request, the request head must be complete within `header_timeout` (slowloris);
//! - **idle timeout**: a kept-alive connection waiting for its next request is closed after
//!   `idle_timeout`; a client that stops reading our answer is closed after `write_timeout`;
//! - **connection cap**: at most `max_connections` are open at once (plus the one being
//!   accepted), so a flood cannot exhaust the process's descriptors. At the cap, the new
//!   connection takes the place of the one that has waited longest without a request in
//!   progress (a slowloris head, or an idle kept-alive connection), else of the one whose
//!   request body has been coming longest: a flood of slow clients evicts its own oldest
//!   members, and `/healthz` is served at once instead of after a timeout. Nobody is evicted in
//!   its first 250 ms; when every connection is answering a request, the new one waits.
//!
//! hyper 1.x has one `header_read_timeout`, which since hyperium/hyper#3185 starts at accept and
//! (as read in hyper 1.12's `proto/h1/conn.rs`) also covers the idle wait between requests, so
//! it cannot give an idle timeout longer than the header timeout. It is left off; `TimedIo`
//! (timed.rs) keeps both clocks. The body timeout is kept where bodies are read (`intake`).

mod timed;

use crate::metrics::METRICS;
use axum::Router;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timed::{ConnClock, Evictable, TimedIo, Tracked};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

/// The limits of `serve`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a write may wait for a client that does not read.
    pub write_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_settings(h: &crate::config::HttpSettings) -> Self {
        Limits { header_timeout: h.header_timeout, idle_timeout: h.idle_timeout, write_timeout: h.body_timeout, max_connections: h.max_connections }
    }
}

static OPEN: AtomicI64 = AtomicI64::new(0);

/// File descriptors kept out of the connection cap: the database pools, tracker clients, the
/// listener, policy files being read, logs.
const FD_RESERVE: u64 = 128;

/// The open-files limit (`ulimit -n`), when there is one.
#[cfg(unix)]
fn open_files_limit() -> Option<u64> {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0;
    (ok && l.rlim_cur != libc::RLIM_INFINITY).then_some(l.rlim_cur as u64)
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<u64> {
    None
}

/// The connection cap actually used: the configured one, lowered when the open-files limit
/// could not hold it (with a margin for everything else), so that connections wait in the
/// backlog instead of every accept failing once descriptors run out.
pub fn connection_cap(configured: usize) -> usize {
    match open_files_limit() {
        Some(limit) if (configured as u64).saturating_add(FD_RESERVE) > limit => {
            let cap = limit.saturating_sub(FD_RESERVE).max(1) as usize;
            tracing::warn!(configured, cap, open_files_limit = limit, "the open-files limit cannot hold ROLLGATE_HTTP_MAX_CONNECTIONS: serving at most {cap} connections at once (raise `ulimit -n` for more)");
            cap
        }
        _ => configured,
    }
}

/// The open connections, so that one can be told to give way at the cap.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, (Arc<ConnClock>, Arc<Notify>)>>,
}

impl Registry {
    fn add(&self, clock: Arc<ConnClock>, close: Arc<Notify>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (clock, close));
        id
    }

    fn remove(&self, id: u64) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Tells one connection to give way to `newcomer`: the one waiting longest without a
    /// request in progress, else the one whose request body has been coming longest; false
    /// when none may (every one is answering, or has only just started).
    fn evict_one(&self, newcomer: u64) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let chosen = open.iter().filter(|(id, _)| **id != newcomer).filter_map(|(_, (clock, close))| clock.evictable().map(|e| (e, close))).min_by_key(|(e, _)| *e);
        match chosen {
            Some((e, close)) => {
                close.notify_one();
                let reason = match e {
                    Evictable::Waiting(_) => "evicted",
                    Evictable::Receiving(_) => "evicted_receiving",
                };
                METRICS.inc("rollgate_http_closed_total", &[("reason", reason)]);
                true
            }
            None => false,
        }
    }
}

/// Serves `router` on `listener` until `stop` turns true, then lets open requests finish.
pub async fn serve(listener: TcpListener, router: Router, mut limits: Limits, mut stop: watch::Receiver<bool>) -> io::Result<()> {
    limits.max_connections = connection_cap(limits.max_connections);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let mut warned: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or memory: pause rather than spin; the next accept may
                    // succeed once connections close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        // Known to the registry before its task runs, so that the very next accept can
        // already evict it.
        let (clock, close) = (Arc::new(ConnClock::new()), Arc::new(Notify::new()));
        let id = registry.add(clock.clone(), close.clone());
        let slot = loop {
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                break Some(slot);
            }
            METRICS.inc("rollgate_http_connections_waited_total", &[]);
            let evicted = registry.evict_one(id);
            if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    max = limits.max_connections,
                    evicted,
                    "connection cap reached (ROLLGATE_HTTP_MAX_CONNECTIONS): the connection waiting longest without a request gives way; when all are busy, new ones wait"
                );
                warned = Some(Instant::now());
            }
            // Look again after a while: a connection that was busy may be waiting by then.
            tokio::select! {
                slot = slots.clone().acquire_owned() => break Some(slot.expect("the slots are never closed")),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stopped(&mut stop) => break None,
            }
        };
        let Some(slot) = slot else {
            registry.remove(id);
            break;
        };
        clock.start();
        let _ = stream.set_nodelay(true);
        let (router, limits, stop, registry) = (router.clone(), limits.clone(), stop.clone(), registry.clone());
        tokio::spawn(async move {
            connection(stream, router, limits, stop, clock, close).await;
            registry.remove(id);
            drop(slot);
        });
    }
    drop(listener);
    // Every connection holds a slot until it ends: having them all back means all are done.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn connection(stream: TcpStream, router: Router, limits: Limits, mut stop: watch::Receiver<bool>, clock: Arc<ConnClock>, close: Arc<Notify>) {
    METRICS.set_gauge("rollgate_http_connections", &[], (OPEN.fetch_add(1, Ordering::Relaxed) + 1) as f64);
    let io = TokioIo::new(TimedIo::new(stream, clock.clone(), limits));
    let service = Tracked { router, clock: clock.clone() };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Off: `TimedIo` keeps the header and idle clocks apart (see the module's comment).
    builder.header_read_timeout(None).keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break ended,
            // Evicted at the cap: it was waiting, or still receiving a request body (whose
            // handler then fails to read it, and the sender may retry). A request whose answer
            // began since it was chosen is served, not dropped.
            _ = close.notified() => if clock.evictable().is_some() { break Ok(()) },
            _ = stopped(&mut stop) => {
                // A connection without a request to finish (idle, a head or a body still
                // coming) closes at once; hyper's graceful shutdown would wait for a slow one.
                if clock.nothing_to_finish() {
                    break Ok(());
                }
                // Finish the request in progress, then close.
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection closed");
    }
    METRICS.set_gauge("rollgate_http_connections", &[], (OPEN.fetch_sub(1, Ordering::Relaxed) - 1) as f64);
}

