//! Limits of the HTTP edge: how long a caller may take and how much it may hold. The defaults
//! leave a tracker's deliveries (a few KB, sent at once) far inside every limit while a slow or
//! hostile client is dropped within seconds (SECURITY.md, "Slow and greedy clients").

use anyhow::bail;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// From the connection's first byte (or its accept) to the end of the request head.
    pub header_timeout: Duration,
    /// From the request head to the end of its body.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one ends.
    pub max_connections: usize,
    /// Bytes of webhook bodies held at once before their signature is checked.
    pub max_unsigned_bytes: usize,
    /// How long a delivery or `/readyz` waits for a store that does not answer before 503 (a
    /// store that answers but commits slowly is waited for longer: `http::webhook`).
    pub store_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_unsigned_bytes: 64 * 1024 * 1024,
            store_timeout: Duration::from_millis(1000),
        }
    }
}

impl HttpSettings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        for (name, d) in [
            ("ROLLGATE_HTTP_HEADER_TIMEOUT_SECS", self.header_timeout),
            ("ROLLGATE_HTTP_BODY_TIMEOUT_SECS", self.body_timeout),
            ("ROLLGATE_HTTP_IDLE_TIMEOUT_SECS", self.idle_timeout),
            ("ROLLGATE_HTTP_STORE_TIMEOUT_MS", self.store_timeout),
        ] {
            if d.is_zero() {
                bail!("{name} must be more than 0: without a limit one slow caller holds its connection for ever");
            }
        }
        if self.max_connections == 0 {
            bail!("ROLLGATE_HTTP_MAX_CONNECTIONS must be at least 1");
        }
        // Reservations are taken in u32 units (tokio's semaphore); 4 GiB is far past any use.
        if self.max_unsigned_bytes == 0 || self.max_unsigned_bytes > u32::MAX as usize {
            bail!("ROLLGATE_HTTP_MAX_UNSIGNED_BYTES must be between 1 and {} bytes", u32::MAX);
        }
        Ok(())
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "http_header_timeout={}s http_body_timeout={}s http_idle_timeout={}s http_max_connections={} http_max_unsigned_bytes={} http_store_timeout={}ms",
            self.header_timeout.as_secs(),
            self.body_timeout.as_secs(),
            self.idle_timeout.as_secs(),
            self.max_connections,
            self.max_unsigned_bytes,
            self.store_timeout.as_millis(),
        )
    }
}
