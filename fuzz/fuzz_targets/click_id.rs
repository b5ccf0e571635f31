//! Signed click ids (`referral_common::click_id`): whatever is presented, the verifier
//! answers without a panic and only accepts bounded ASCII; an id the gateway mints verifies;
//! and any one-byte change of a minted id never does (no forgery by editing a character).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use referral_common::{click_id::ClickKeys, config::Secret};

fn keys() -> ClickKeys {
    ClickKeys::parse(
        "CLICK_SIGNING_KEYS",
        &Secret::new("k2:fuzz-click-key-0123456789abcdef01234,k1:older-fuzz-key-0123456789abcdef0"),
    )
    .expect("the fuzz keys parse")
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    presented: &'a str,
    at_millis: u64,
    flip_at: usize,
    flip_to: u8,
    secure: bool,
}

fuzz_target!(|input: Input<'_>| {
    let keys = keys();
    if keys.verify(input.presented).is_ok() {
        assert!(
            input.presented.is_ascii() && input.presented.len() <= referral_common::click_id::MAX_LEN,
            "an accepted id is bounded ASCII"
        );
    }
    // Any instant from 1970 to ~2096 to the millisecond.
    let at = chrono::DateTime::from_timestamp_millis((input.at_millis % 4_000_000_000_000) as i64)
        .expect("in range");
    let id = keys.sign("LOVE-7KQ2ZD", at);
    let signed = keys.verify(&id).expect("a minted id verifies");
    assert_eq!(signed.code, "LOVE-7KQ2ZD");
    let mut bytes = id.clone().into_bytes();
    let at = input.flip_at % bytes.len();
    if bytes[at] != input.flip_to {
        bytes[at] = input.flip_to;
        let edited = String::from_utf8_lossy(&bytes);
        assert!(keys.verify(&edited).is_err(), "an edited id verified: {edited}");
    }
    // The cookie that carries it is always a valid header value.
    let cookie = gateway::routes::redirect::click_cookie(&id, input.secure);
    assert!(http_header_safe(&cookie), "{cookie}");
});

/// Visible ASCII and spaces only: what `HeaderValue::from_str` accepts without surprises.
fn http_header_safe(s: &str) -> bool {
    s.bytes().all(|b| b == b' ' || (0x21..0x7f).contains(&b))
}
