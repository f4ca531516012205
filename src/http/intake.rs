//! Reading a request body before anyone has vouched for it (a webhook before its signature is
//! checked, an evaluate call before or without a token). Three limits apply:
//!
//! - a declared `Content-Length` over `MAX_BODY_BYTES` is refused at once (413), the body never
//!   read and the connection closed, instead of reading 25 MiB to find out;
//! - the whole body must arrive within the body timeout, counted from when the handler starts
//!   (just after the request head): a client that trickles a byte every few seconds is cut off
//!   (408) instead of holding its connection and its buffer;
//! - the bytes held at once by all such bodies are capped (a shared budget). A body takes its
//!   share before it is read (its declared length, or as it grows when chunked); one that cannot
//!   get it within `SHARE_WAIT` is refused with 503, which a tracker redelivers, rather than
//!   letting stalled senders grow the process without bound.

use super::MAX_BODY_BYTES;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a body may wait for its share of the budget before it is refused with 503.
pub const SHARE_WAIT: Duration = Duration::from_secs(2);
/// A body of unknown length (chunked) takes its share in steps of this size as it grows.
const STEP: usize = 64 * 1024;

/// The limits every unauthenticated body is read under; one per server.
pub struct Intake {
    budget: Arc<Semaphore>,
    cap: usize,
    body_timeout: Duration,
    share_wait: Duration,
}

/// The share of the budget a body holds; given back when dropped (after the signature check).
pub struct Held(#[allow(dead_code)] Vec<OwnedSemaphorePermit>);

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Declared or sent over `MAX_BODY_BYTES`.
    TooLarge,
    /// Not all there within the body timeout.
    TooSlow,
    /// No share of the unsigned-bytes budget within `SHARE_WAIT`.
    Busy,
    /// The connection failed while the body was read.
    Broken,
}

impl Refusal {
    /// The metric outcome it is counted under.
    pub fn outcome(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::TooSlow => "too_slow",
            Refusal::Busy => "busy",
            Refusal::Broken => "broken",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, format!("body over {MAX_BODY_BYTES} bytes")),
            Refusal::TooSlow => (StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time".to_string()),
            Refusal::Busy => (StatusCode::SERVICE_UNAVAILABLE, "too many deliveries are being received at once; redeliver it".to_string()),
            Refusal::Broken => (StatusCode::BAD_REQUEST, "the body could not be read".to_string()),
        };
        let mut r = (status, Json(json!({ "error": text }))).into_response();
        // The rest of the body is never read: the connection cannot carry another request.
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        if self == Refusal::Busy {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// The declared `Content-Length`, when there is one that reads as a number.
pub fn declared_length(parts: &axum::http::HeaderMap) -> Option<u64> {
    parts.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

impl Intake {
    pub fn new(cap: usize, body_timeout: Duration) -> Self {
        Intake { budget: Arc::new(Semaphore::new(cap)), cap, body_timeout, share_wait: SHARE_WAIT }
    }

    /// Bytes of the budget free now (for /metrics).
    pub fn available(&self) -> usize {
        self.budget.available_permits()
    }

    /// Reads the whole body under the three limits; the parts come back untouched.
    pub async fn read(&self, req: Request) -> Result<(Parts, Bytes, Held), Refusal> {
        let (parts, body) = req.into_parts();
        let declared = declared_length(&parts.headers);
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(Refusal::TooLarge);
        }
        match tokio::time::timeout(self.body_timeout, self.collect(body, declared)).await {
            Ok(Ok((bytes, held))) => Ok((parts, bytes, held)),
            Ok(Err(refusal)) => Err(refusal),
            Err(_) => Err(Refusal::TooSlow),
        }
    }

    async fn collect(&self, mut body: Body, declared: Option<u64>) -> Result<(Bytes, Held), Refusal> {
        let mut held = Held(Vec::new());
        let mut reserved = 0usize;
        if let Some(n) = declared.filter(|n| *n > 0) {
            reserved += self.reserve(&mut held, n as usize).await?;
        }
        // Grown as bytes arrive, never from the declared length alone.
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Refusal::Broken)?;
            let Ok(data) = frame.into_data() else { continue };
            let len = buf.len() + data.len();
            if len > MAX_BODY_BYTES {
                return Err(Refusal::TooLarge);
            }
            // A body larger than the whole budget holds all of it, and no more.
            if len > reserved && reserved < self.cap {
                reserved += self.reserve(&mut held, (len - reserved).max(STEP)).await?;
            }
            buf.extend_from_slice(&data);
        }
        Ok((Bytes::from(buf), held))
    }

    /// Takes up to `want` bytes of the budget (never more than it has in all), waiting at most
    /// `share_wait`; returns how many were taken.
    async fn reserve(&self, held: &mut Held, want: usize) -> Result<usize, Refusal> {
        let already: usize = held.0.iter().map(|p| p.num_permits()).sum();
        let n = want.min(self.cap - already);
        if n == 0 {
            return Ok(0);
        }
        let permits = u32::try_from(n).map_err(|_| Refusal::TooLarge)?;
        match tokio::time::timeout(self.share_wait, self.budget.clone().acquire_many_owned(permits)).await {
            Ok(Ok(p)) => {
                held.0.push(p);
                Ok(n)
            }
            // The semaphore is never closed; a timeout means the budget is taken.
            _ => Err(Refusal::Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Body, length: Option<usize>) -> Request {
        let mut b = axum::http::Request::builder().method("POST").uri("/webhooks/github");
        if let Some(n) = length {
            b = b.header(header::CONTENT_LENGTH, n);
        }
        b.body(body).unwrap()
    }

    #[tokio::test]
    async fn the_budget_is_shared_and_given_back() {
        let intake = Intake { share_wait: Duration::from_millis(50), ..Intake::new(1000, Duration::from_secs(5)) };
        let (_, bytes, held) = intake.read(request(Body::from(vec![b'x'; 600]), Some(600))).await.unwrap();
        assert_eq!(bytes.len(), 600);
        assert_eq!(intake.available(), 400, "600 bytes are held until the share is dropped");
        let refused = intake.read(request(Body::from(vec![b'y'; 600]), Some(600))).await.err();
        assert_eq!(refused, Some(Refusal::Busy), "a second body does not fit beside the first");
        drop(held);
        assert_eq!(intake.available(), 1000);
        assert!(intake.read(request(Body::from(vec![b'y'; 600]), Some(600))).await.is_ok());
        // A body larger than the whole budget takes all of it, and passes when alone.
        let (_, bytes, _held) = intake.read(request(Body::from(vec![b'z'; 5000]), None)).await.unwrap();
        assert_eq!((bytes.len(), intake.available()), (5000, 0));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let intake = Intake::new(1 << 20, Duration::from_secs(5));
        // A body that would never end: refused from its header alone.
        let endless = Body::new(Stalled);
        let refused = intake.read(request(endless, Some(MAX_BODY_BYTES + 1))).await.err();
        assert_eq!(refused, Some(Refusal::TooLarge));
        assert_eq!(intake.available(), 1 << 20, "nothing was reserved for it");
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_refused() {
        let intake = Intake::new(1 << 20, Duration::from_millis(100));
        let refused = intake.read(request(Body::new(Stalled), Some(10))).await.err();
        assert_eq!(refused, Some(Refusal::TooSlow));
        assert_eq!(intake.available(), 1 << 20, "its share is given back");
    }

    /// A body whose sender stopped sending.
    struct Stalled;

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
            std::task::Poll::Pending
        }
    }
}
