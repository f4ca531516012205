//! HMAC-SHA256 webhook signatures (GitHub's `X-Hub-Signature-256`, Jira's `X-Hub-Signature`).

use crate::config::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// True when `header` (`sha256=<hex>`) is the HMAC of `body` under any of `secrets`.
/// Each comparison is constant time (`verify_slice`); every secret is tried so the time taken
/// does not reveal which one matched.
pub fn verify(secrets: &[Secret], body: &[u8], header: Option<&str>) -> bool {
    let Some(expected) = header
        .and_then(|h| h.trim().strip_prefix("sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
    else {
        return false;
    };
    let mut ok = false;
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        ok |= mac.verify_slice(&expected).is_ok();
    }
    ok
}

/// `sha256=<hex>` for `body`; what the trackers send, and what the tests sign with.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_configured_secret_and_nothing_else() {
        let secrets = vec![Secret::new("old"), Secret::new("new")];
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        assert!(verify(&secrets, body, Some(&sign("new", body))));
        assert!(verify(&secrets, body, Some(&sign("old", body))));
        assert!(!verify(&secrets, body, Some(&sign("other", body))));
        assert!(!verify(&secrets, b"tampered", Some(&sign("new", body))));
        assert!(!verify(&secrets, body, None));
        assert!(!verify(&secrets, body, Some("sha256=zz")));
        assert!(!verify(&secrets, body, Some(&sign("new", body).replace("sha256=", "sha1="))));
        assert!(!verify(&[], body, Some(&sign("new", body))));
    }
}
