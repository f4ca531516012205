//! Request bodies from a real webhook fixture: the file's bytes kept as they are (its size and
//! formatting are what rollgate parses in production) with only `issue.number` rewritten, and
//! the `X-Hub-Signature-256` value computed once per body.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use hyper::header::HeaderValue;
use sha2::Sha256;

/// One delivery body and its signature header, ready to send any number of times.
#[derive(Clone)]
pub struct Signed {
    pub body: Bytes,
    pub signature: HeaderValue,
}

/// The fixture split around the digits of `issue.number`, so a body for another issue is
/// `head + number + tail` with nothing re-serialized.
pub struct Template {
    head: Vec<u8>,
    tail: Vec<u8>,
    secret: Vec<u8>,
}

impl Template {
    pub fn load(path: &std::path::Path, secret: &str) -> Result<Template, String> {
        let text = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let (start, end) = issue_number_span(&text).ok_or_else(|| format!("{}: no issue.number in the payload", path.display()))?;
        let t = Template { head: text[..start].to_vec(), tail: text[end..].to_vec(), secret: secret.as_bytes().to_vec() };
        // The rewrite must change that one value and nothing else; prove it once.
        let original: serde_json::Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut expected = original;
        expected["issue"]["number"] = 987_654_321u64.into();
        let rewritten: serde_json::Value = serde_json::from_slice(&t.body(987_654_321)).map_err(|e| format!("rewritten body: {e}"))?;
        if rewritten != expected {
            return Err("rewriting issue.number changed more than the number".into());
        }
        Ok(t)
    }

    pub fn body(&self, number: u64) -> Vec<u8> {
        let digits = number.to_string();
        let mut out = Vec::with_capacity(self.head.len() + digits.len() + self.tail.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(digits.as_bytes());
        out.extend_from_slice(&self.tail);
        out
    }

    pub fn signed(&self, number: u64) -> Signed {
        let body = self.body(number);
        let signature = sign(&self.secret, &body);
        Signed { body: Bytes::from(body), signature }
    }
}

pub fn sign(secret: &[u8], body: &[u8]) -> HeaderValue {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let value = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    HeaderValue::from_str(&value).expect("hex is a valid header value")
}

/// Byte range of the number token of the top-level `"issue"` object's `"number"` key.
/// A small scanner that tracks nesting and strings, so a `"number"` elsewhere (a milestone's,
/// text inside the issue body) is never the one rewritten.
fn issue_number_span(json: &[u8]) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut i = 0usize;
    // Depth at which the top-level issue object's members live, once entered.
    let mut in_issue: Option<usize> = None;
    let mut last_string: Option<(usize, usize)> = None;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    if json[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                last_string = Some((start, i));
            }
            b':' => {
                let key = last_string.take().map(|(s, e)| &json[s..e]);
                if depth == 1 && key == Some(b"issue".as_slice()) {
                    in_issue = Some(2);
                } else if in_issue == Some(depth) && key == Some(b"number".as_slice()) {
                    let mut s = i + 1;
                    while s < json.len() && json[s].is_ascii_whitespace() {
                        s += 1;
                    }
                    let mut e = s;
                    while e < json.len() && json[e].is_ascii_digit() {
                        e += 1;
                    }
                    return (e > s).then_some((s, e));
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if in_issue == Some(depth) {
                    in_issue = None;
                }
                depth = depth.saturating_sub(1);
            }
            b',' => last_string = None,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_the_issue_number() {
        let json = br#"{"number": 7, "issue": {"body": "\"number\": 3", "milestone": {"number": 9}, "number": 42, "x": 1}, "y": 2}"#;
        let (s, e) = issue_number_span(json).unwrap();
        assert_eq!(&json[s..e], b"42");
    }

    #[test]
    fn fixture_keeps_its_size_and_signature_matches() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/github/issues.opened.json");
        let t = Template::load(&path, "s3cret").unwrap();
        let original = std::fs::read(&path).unwrap();
        let signed = t.signed(123_456);
        assert_eq!(signed.body.len(), original.len() + 5, "only the digits change");
        let v: serde_json::Value = serde_json::from_slice(&signed.body).unwrap();
        assert_eq!(v["issue"]["number"], 123_456);
        assert_eq!(v["issue"]["title"], serde_json::from_slice::<serde_json::Value>(&original).unwrap()["issue"]["title"]);
        // RFC-style known answer (the HMAC-SHA256 example everyone quotes), so a wrong header fails here.
        assert_eq!(sign(b"key", b"The quick brown fox jumps over the lazy dog").to_str().unwrap(),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    }
}
