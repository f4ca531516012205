//! One HTTP/1.1 keep-alive connection per in-flight request, hyper's low-level client: no pool,
//! no DNS, no TLS — the less the generator does per request, the more of the 2 cores the server
//! under test gets.

use crate::body::Signed;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use std::net::{SocketAddr, ToSocketAddrs};
use tokio::net::TcpStream;

const X_GITHUB_EVENT: HeaderName = HeaderName::from_static("x-github-event");
const X_GITHUB_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
const X_HUB_SIGNATURE_256: HeaderName = HeaderName::from_static("x-hub-signature-256");

/// Where deliveries go: `http://host:port/path`, resolved once.
pub struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    path: Uri,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs (loopback benchmarks)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority}: no address"))?;
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority).map_err(|e| format!("{authority}: {e}"))?,
            path: path.parse().map_err(|e| format!("{path}: {e}"))?,
        })
    }

    pub async fn connect(&self) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(self.addr).await?;
        // The body goes out in a second write after the headers; Nagle would hold it for an ACK.
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        Ok(Conn(sender))
    }

    /// A signed `issues` delivery; only the delivery id is new per request.
    pub fn request(&self, d: &Signed, delivery: HeaderValue) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(d.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.path.clone();
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(USER_AGENT, HeaderValue::from_static("GitHub-Hookshot/rollgate-loadgen"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(X_GITHUB_EVENT, HeaderValue::from_static("issues"));
        h.insert(X_GITHUB_DELIVERY, delivery);
        h.insert(X_HUB_SIGNATURE_256, d.signature.clone());
        req
    }
}

pub struct Conn(SendRequest<Full<Bytes>>);

impl Conn {
    /// Sends and reads the whole answer: the status and its (small) body.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), hyper::Error> {
        self.0.ready().await?;
        let resp = self.0.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Unique `X-GitHub-Delivery` values shaped like GitHub's UUIDs: a per-process random half
/// and a counter, so reruns against the same database never collide.
pub struct DeliveryIds {
    nonce: u64,
    next: u64,
}

impl DeliveryIds {
    pub fn new() -> DeliveryIds {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mixed = (t.as_nanos() as u64) ^ ((std::process::id() as u64) << 40);
        DeliveryIds { nonce: splitmix(mixed), next: 0 }
    }

    pub fn next(&mut self) -> HeaderValue {
        let (hi, lo) = (self.nonce, self.next);
        self.next += 1;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 36];
        let mut pos = 0;
        for (i, nibble) in (0..32).map(|i| if i < 16 { (hi >> (60 - 4 * i)) & 15 } else { (lo >> (60 - 4 * (i - 16))) & 15 }).enumerate() {
            if matches!(i, 8 | 12 | 16 | 20) {
                out[pos] = b'-';
                pos += 1;
            }
            out[pos] = HEX[nibble as usize];
            pos += 1;
        }
        HeaderValue::from_bytes(&out).expect("hex and dashes")
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_uuid_shaped_and_distinct() {
        let mut ids = DeliveryIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        let s = a.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(s.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
    }
}
