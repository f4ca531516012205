//! A server that reads each request whole and answers 202 `{"status":"queued"}` without doing
//! anything else: the generator's ceiling on this machine, with the same body size and the same
//! HTTP/1.1 keep-alive exchange as a real run.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::task::spawn_local(async move {
            let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                // Read the body as a real server must before it can verify a signature.
                let _ = req.into_body().collect().await;
                let mut r = Response::new(Full::new(Bytes::from_static(br#"{"status":"queued"}"#)));
                *r.status_mut() = StatusCode::ACCEPTED;
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
                Ok::<_, std::convert::Infallible>(r)
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
