//! The HTTP/1 server: our own accept loop over hyper, because `axum::serve` has no timeouts and
//! no connection cap. A connection here is bounded three ways:
//!
//! - **header timeout**: from its accept (first request) or from the first byte of a later
//!   request, the request head must be complete within `header_timeout` (slowloris);
//! - **idle timeout**: a kept-alive connection waiting for its next request is closed after
//!   `idle_timeout`; a client that stops reading our answer is closed after `write_timeout`;
//! - **connection cap**: at most `max_connections` are served at once; further ones wait in the
//!   kernel's listen backlog (not as open file descriptors) until one ends, so a flood of slow
//!   clients cannot exhaust the process's descriptors, and every slot frees itself within the
//!   timeouts: `/healthz` gets its turn.
//!
//! hyper 1.x has one `header_read_timeout`, which since hyperium/hyper#3185 starts at accept and
//! (as read in hyper 1.12's `proto/h1/conn.rs`) also covers the idle wait between requests, so
//! it cannot give an idle timeout longer than the header timeout. It is left off; `TimedIo`
//! below keeps both clocks. The body timeout is kept where bodies are read (`intake`).

use crate::metrics::METRICS;
use axum::body::Bytes;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

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

/// Serves `router` on `listener` until `stop` turns true, then lets open requests finish.
pub async fn serve(listener: TcpListener, router: Router, mut limits: Limits, mut stop: watch::Receiver<bool>) -> io::Result<()> {
    limits.max_connections = connection_cap(limits.max_connections);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut warned: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                METRICS.inc("rollgate_http_connections_waited_total", &[]);
                if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(max = limits.max_connections, "connection cap reached: new connections wait until one ends (ROLLGATE_HTTP_MAX_CONNECTIONS)");
                    warned = Some(Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
                    _ = stopped(&mut stop) => break,
                }
            }
        };
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
        let _ = stream.set_nodelay(true);
        let (router, limits, stop) = (router.clone(), limits.clone(), stop.clone());
        tokio::spawn(async move {
            connection(stream, router, limits, stop).await;
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

async fn connection(stream: TcpStream, router: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    METRICS.set_gauge("rollgate_http_connections", &[], (OPEN.fetch_add(1, Ordering::Relaxed) + 1) as f64);
    let clock = Arc::new(ConnClock::new());
    let io = TokioIo::new(TimedIo::new(stream, clock.clone(), limits));
    let service = Tracked { router, clock };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Off: `TimedIo` keeps the header and idle clocks apart (see the module's comment).
    builder.header_read_timeout(None).keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = stopped(&mut stop) => {
            // Finish the request in progress, if any; an idle connection closes at once.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection closed");
    }
    METRICS.set_gauge("rollgate_http_connections", &[], (OPEN.fetch_sub(1, Ordering::Relaxed) - 1) as f64);
}

/// Why a connection was closed by a clock.
#[derive(Clone, Copy)]
enum Expired {
    Header,
    Idle,
    Write,
}

impl Expired {
    fn as_str(self) -> &'static str {
        match self {
            Expired::Header => "header_timeout",
            Expired::Idle => "idle_timeout",
            Expired::Write => "write_timeout",
        }
    }
}

/// What a connection is doing, as far as its clocks care.
struct Phase {
    /// Requests handed to the router and not yet fully answered.
    busy: usize,
    /// No request yet: the head must come within the header timeout of the accept.
    fresh: bool,
    /// When it last became idle (its accept, or the end of its last answer).
    since: Instant,
    /// The first byte read while idle: the start of the next request's head.
    first_byte: Option<Instant>,
}

/// The shared clock of one connection: the service marks requests, the I/O reads the deadline.
struct ConnClock(Mutex<Phase>);

impl ConnClock {
    fn new() -> Self {
        ConnClock(Mutex::new(Phase { busy: 0, fresh: true, since: Instant::now(), first_byte: None }))
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When a pending read must give up, and why; `None` while a request is being served (its
    /// body has its own timeout, and the handler's time is not the client's).
    fn read_deadline(&self, limits: &Limits) -> Option<(Instant, Expired)> {
        let p = self.phase();
        if p.busy > 0 {
            return None;
        }
        Some(match (p.first_byte, p.fresh) {
            (Some(t), _) => (t + limits.header_timeout, Expired::Header),
            (None, true) => (p.since + limits.header_timeout, Expired::Header),
            (None, false) => (p.since + limits.idle_timeout, Expired::Idle),
        })
    }

    fn bytes_arrived(&self) {
        let mut p = self.phase();
        if p.busy == 0 && p.first_byte.is_none() {
            p.first_byte = Some(Instant::now());
        }
    }

    fn request_started(self: &Arc<Self>) -> Busy {
        let mut p = self.phase();
        p.busy += 1;
        p.fresh = false;
        p.first_byte = None;
        Busy(self.clone())
    }
}

/// Held while a request is in progress: from the router's call until hyper drops the answer's
/// body (written out, or the connection gone).
struct Busy(Arc<ConnClock>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut p = self.0.phase();
        p.busy -= 1;
        if p.busy == 0 {
            p.since = Instant::now();
            p.first_byte = None;
        }
    }
}

/// The router as hyper's service, marking each request on the connection's clock.
struct Tracked {
    router: Router,
    clock: Arc<ConnClock>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let busy = self.clock.request_started();
        let router = self.router.clone();
        Box::pin(async move {
            let answer = router.oneshot(req).await?;
            Ok(answer.map(|body| TrackedBody { body, _busy: busy }))
        })
    }
}

/// The answer's body, carrying the `Busy` mark until hyper is done with it.
struct TrackedBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The TCP stream with the connection's read clocks and a write timeout: a pending read or
/// write past its deadline fails with `TimedOut`, which ends the connection.
struct TimedIo {
    inner: TcpStream,
    clock: Arc<ConnClock>,
    limits: Limits,
    read_timer: Pin<Box<Sleep>>,
    read_deadline: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    write_blocked: Option<Instant>,
}

impl TimedIo {
    fn new(inner: TcpStream, clock: Arc<ConnClock>, limits: Limits) -> Self {
        let far = Instant::now() + Duration::from_secs(86_400);
        TimedIo {
            inner,
            clock,
            limits,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            read_deadline: None,
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_blocked: None,
        }
    }

    fn expired(why: Expired) -> io::Error {
        METRICS.inc("rollgate_http_closed_total", &[("reason", why.as_str())]);
        io::Error::new(io::ErrorKind::TimedOut, why.as_str())
    }

    /// A pending write: fails once it has been blocked for the write timeout.
    fn write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let since = *self.write_blocked.get_or_insert_with(Instant::now);
        let deadline = since + self.limits.write_timeout;
        if self.write_timer.deadline() != deadline {
            self.write_timer.as_mut().reset(deadline);
        }
        match self.write_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Self::expired(Expired::Write)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn write_result<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write_blocked = None;
                Poll::Ready(r)
            }
            Poll::Pending => match self.write_pending(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((deadline, why)) = this.clock.read_deadline(&this.limits) else {
                    return Poll::Pending;
                };
                if this.read_deadline != Some(deadline) {
                    this.read_timer.as_mut().reset(deadline);
                    this.read_deadline = Some(deadline);
                }
                match this.read_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(TimedIo::expired(why))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.write_result(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.write_result(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.write_result(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
