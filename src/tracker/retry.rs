//! How long to wait before trying a tracker call again.

use super::{TrackerError, TrackerResult};
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use std::future::Future;
use std::time::Duration;

/// What one attempt of a tracker call came back with.
pub enum Answer {
    /// Nothing usable arrived (connection refused or reset, timeout).
    Transport(String),
    /// A response: status, headers and body text.
    Response { status: StatusCode, headers: HeaderMap, text: String },
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in place (the first included) before the error goes back to the queue.
    pub attempts: u32,
    pub base: Duration,
    /// A wait longer than this is not done in place: the event is rescheduled instead, so a
    /// worker never sleeps for minutes on one issue.
    pub max_wait_in_place: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 4, base: Duration::from_millis(500), max_wait_in_place: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(1 << attempt.min(10))
    }

    /// Runs one call, again as long as it is worth it: 5xx, 429 and rate limits are waited out
    /// in place (honouring `Retry-After` and `X-RateLimit-Reset`); a wait too long for that, or
    /// the last attempt, goes back to the queue with the time to retry. `what` names the call
    /// in errors; `message` reads the tracker's error text from a body. Every call rollgate
    /// makes is safe to repeat.
    pub async fn run<F, Fut>(&self, tracker: &str, what: &str, message: fn(&str) -> String, mut attempt: F) -> TrackerResult<String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Answer>,
    {
        let mut n = 0;
        let label = tracker.to_ascii_lowercase();
        let count = |outcome: &str| crate::metrics::METRICS.inc("rollgate_tracker_calls_total", &[("tracker", &label), ("outcome", outcome)]);
        loop {
            let last = n + 1 >= self.attempts;
            let answer = attempt().await;
            let outcome = match &answer {
                Answer::Transport(_) => "transient",
                Answer::Response { status, .. } if status.is_success() => "ok",
                Answer::Response { status, .. } if *status == StatusCode::NOT_FOUND => "not_found",
                Answer::Response { status, headers, text } if classify(*status, headers, text, Utc::now()).is_some() => "rate_limited_or_5xx",
                Answer::Response { .. } => "rejected",
            };
            count(outcome);
            if let Answer::Response { headers, .. } = &answer {
                // What the tracker says is left of its own rate limit (GitHub's X-RateLimit-*).
                if let Some(left) = header(headers, "x-ratelimit-remaining").and_then(|v| v.parse::<f64>().ok()) {
                    crate::metrics::METRICS.set_gauge("rollgate_tracker_rate_limit_remaining", &[("tracker", &label)], left);
                }
            }
            let wait = match answer {
                Answer::Transport(e) if last => return Err(TrackerError::Transient(format!("{what}: {e}"))),
                Answer::Transport(_) => self.backoff(n),
                Answer::Response { status, text, .. } if status.is_success() => return Ok(text),
                Answer::Response { status, .. } if status == StatusCode::NOT_FOUND => return Err(TrackerError::NotFound),
                Answer::Response { status, headers, text } => {
                    let now = Utc::now();
                    let Some(asked) = classify(status, &headers, &text, now) else {
                        return Err(TrackerError::Rejected(format!("{what}: {status} {}", message(&text))));
                    };
                    let wait = asked.unwrap_or_else(|| self.backoff(n));
                    if wait > self.max_wait_in_place || last {
                        let until = wait.max(self.backoff(n));
                        let retry_at = now + chrono::Duration::from_std(until).unwrap_or(chrono::Duration::seconds(60));
                        let limited = asked.is_some() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN;
                        return Err(if limited { TrackerError::RateLimited { retry_at } } else { TrackerError::Transient(format!("{what}: {status}")) });
                    }
                    tracing::warn!(%status, attempt = n, wait_ms = wait.as_millis() as u64, "{tracker} asked us to wait");
                    wait
                }
            };
            tokio::time::sleep(wait).await;
            n += 1;
        }
    }
}

/// Is this response one to retry, and is there a wait the server asked for?
/// GitHub: 5xx; 429; 403 with `retry-after` or `x-ratelimit-remaining: 0` (primary limit);
/// 403 whose message mentions the secondary rate limit.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str, now: DateTime<Utc>) -> Option<Option<Duration>> {
    let limited_403 = status == StatusCode::FORBIDDEN
        && (headers.contains_key("retry-after")
            || header(headers, "x-ratelimit-remaining") == Some("0")
            || body.to_ascii_lowercase().contains("secondary rate limit"));
    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || limited_403) {
        return None;
    }
    Some(server_wait(headers, now))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `Retry-After` (seconds or an HTTP date) wins; else `X-RateLimit-Reset` when the budget is
/// spent.
pub fn server_wait(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if let Some(v) = header(headers, "retry-after") {
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = DateTime::parse_from_rfc2822(v) {
            return Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default());
        }
    }
    if header(headers, "x-ratelimit-remaining") == Some("0") {
        if let Some(reset) = header(headers, "x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()) {
            let at = DateTime::from_timestamp(reset, 0)?;
            return Some((at - now).to_std().unwrap_or_default() + Duration::from_secs(1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_and_rate_limit_reset_are_honoured() {
        let now = Utc::now();
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &h, "", now), Some(Some(Duration::from_secs(7))));
        let reset = (now.timestamp() + 60).to_string();
        let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset)]);
        let wait = classify(StatusCode::FORBIDDEN, &h, "", now).unwrap().unwrap();
        assert!(wait >= Duration::from_secs(59) && wait <= Duration::from_secs(61), "{wait:?}");
        let body = r#"{"message":"You have exceeded a secondary rate limit."}"#;
        assert_eq!(classify(StatusCode::FORBIDDEN, &HeaderMap::new(), body, now), Some(None));
        assert_eq!(classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "", now), Some(None));
        assert_eq!(classify(StatusCode::FORBIDDEN, &HeaderMap::new(), "{\"message\":\"no\"}", now), None);
        assert_eq!(classify(StatusCode::UNPROCESSABLE_ENTITY, &HeaderMap::new(), "", now), None);
    }
}
