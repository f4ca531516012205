//! The clocks of one connection: `ConnClock` knows whether a request is being served and since
//! when the connection has waited; `TimedIo` fails a read or write past its deadline; `Tracked`
//! marks each request on the clock until hyper is done with its answer.

use crate::metrics::METRICS;
use axum::body::Bytes;
use axum::Router;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::Limits;

/// Why a connection was closed by a clock.
#[derive(Clone, Copy)]
pub(super) enum Expired {
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
    /// When the request in progress began, and whether its body is still coming.
    request_started: Instant,
    receiving: bool,
}

/// How a connection may be made to give way at the cap, oldest first within each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Evictable {
    /// No request in progress (a head still coming, or idle between requests) since then.
    Waiting(Instant),
    /// A request whose body is still coming, begun then: given way only when no connection
    /// is merely waiting, so that a flood of slow bodies cannot hold every slot either.
    Receiving(Instant),
}

/// A connection is never evicted in its first moments: a real client sends its request head
/// right after connecting, and a newcomer must not be pushed out by the next one before it
/// could. Short, because at the cap it also paces how fast a flood is accepted (cap / grace
/// connections a second): 128 slots drain a backlog of 2,300 slow clients in about 5 s.
const EVICTION_GRACE: Duration = Duration::from_millis(250);

/// The shared clock of one connection: the service marks requests, the I/O reads the deadline.
pub(super) struct ConnClock(Mutex<Phase>);

impl ConnClock {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        ConnClock(Mutex::new(Phase { busy: 0, fresh: true, since: now, first_byte: None, request_started: now, receiving: false }))
    }

    /// The connection starts being served (it had to wait for a slot, maybe): its clocks
    /// start now.
    pub(super) fn start(&self) {
        self.phase().since = Instant::now();
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

    /// Whether, and how, this connection may give way to a newcomer now.
    pub(super) fn evictable(&self) -> Option<Evictable> {
        let p = self.phase();
        let now = Instant::now();
        if p.busy == 0 {
            (p.since + EVICTION_GRACE <= now).then_some(Evictable::Waiting(p.since))
        } else {
            (p.receiving && p.request_started + EVICTION_GRACE <= now).then_some(Evictable::Receiving(p.request_started))
        }
    }

    /// Whether nothing would be lost by closing now: no request, or one whose body is still
    /// coming (not read, so not acknowledged: its sender retries).
    pub(super) fn nothing_to_finish(&self) -> bool {
        let p = self.phase();
        p.busy == 0 || p.receiving
    }

    fn body_done(&self) {
        self.phase().receiving = false;
    }

    fn bytes_arrived(&self) {
        let mut p = self.phase();
        if p.busy == 0 && p.first_byte.is_none() {
            p.first_byte = Some(Instant::now());
        }
    }

    fn request_started(self: &Arc<Self>, with_body: bool) -> Busy {
        let mut p = self.phase();
        p.busy += 1;
        p.fresh = false;
        p.first_byte = None;
        p.request_started = Instant::now();
        p.receiving = with_body;
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
            p.receiving = false;
        }
    }
}

/// The router as hyper's service, marking each request on the connection's clock.
pub(super) struct Tracked {
    pub(super) router: Router,
    pub(super) clock: Arc<ConnClock>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        use http_body::Body as _;
        let busy = self.clock.request_started(!req.body().is_end_stream());
        let router = self.router.clone();
        let clock = self.clock.clone();
        let req = req.map(|body| WatchedBody { body, clock });
        Box::pin(async move {
            let answer = router.oneshot(req).await?;
            Ok(answer.map(|body| TrackedBody { body, _busy: busy }))
        })
    }
}

/// The request's body, telling the clock when it has all arrived.
pub(super) struct WatchedBody {
    body: Incoming,
    clock: Arc<ConnClock>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.clock.body_done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The answer's body, carrying the `Busy` mark until hyper is done with it.
pub(super) struct TrackedBody {
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
pub(super) struct TimedIo {
    inner: TcpStream,
    clock: Arc<ConnClock>,
    limits: Limits,
    read_timer: Pin<Box<Sleep>>,
    read_deadline: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    write_blocked: Option<Instant>,
}

impl TimedIo {
    pub(super) fn new(inner: TcpStream, clock: Arc<ConnClock>, limits: Limits) -> Self {
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

    pub(super) fn expired(why: Expired) -> io::Error {
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
