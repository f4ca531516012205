//! The webhook signature check: arbitrary secrets, bodies and `X-Hub-Signature(-256)` headers.
//!
//! Properties:
//! - no secret configured: nothing verifies;
//! - a header verifies only when it is `sha256=` + the HMAC of the body under one of the
//!   secrets (hex in either case, surrounding whitespace allowed): no false accept;
//! - `sign(secret, body)` always verifies, with the secret alone or among others;
//! - one flipped bit in the body, or one changed hex digit in the signature, never verifies.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rollgate::config::Secret;
use rollgate::ingest::signature::{sign, verify};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secrets: Vec<&'a str>,
    header: Option<&'a str>,
    flip: usize,
    body: &'a [u8],
}

/// The only headers that may verify, by the contract above.
fn genuine(secrets: &[&str], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else { return false };
    secrets.iter().any(|s| sign(s, body)["sha256=".len()..].eq_ignore_ascii_case(hex))
}

fuzz_target!(|input: Input<'_>| {
    let Input { secrets, header, flip, body } = input;
    // Rotation keeps a handful of secrets; more only slows the run down.
    let secrets = &secrets[..secrets.len().min(4)];
    let configured: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();

    let accepted = verify(&configured, body, header);
    assert_eq!(accepted, header.is_some_and(|h| genuine(secrets, body, h)), "header {header:?}");
    assert!(!verify(&[], body, header), "no secret configured must refuse everything");

    for secret in secrets {
        let good = sign(secret, body);
        assert!(verify(&[Secret::new(*secret)], body, Some(&good)));
        assert!(verify(&configured, body, Some(&good)));
        if !body.is_empty() {
            let mut tampered = body.to_vec();
            let at = flip % tampered.len();
            tampered[at] ^= 1 << (flip / tampered.len() % 8);
            assert!(!verify(&[Secret::new(*secret)], &tampered, Some(&good)), "a flipped bit verified");
        }
        // Change one hex digit of the signature (to another hex digit).
        let mut forged = good.into_bytes();
        let at = "sha256=".len() + flip % 64;
        forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).expect("hex is ASCII");
        assert!(!verify(&[Secret::new(*secret)], body, Some(&forged)), "a changed digit verified");
    }
});
