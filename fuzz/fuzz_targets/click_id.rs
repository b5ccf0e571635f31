//! Click-id parsing and validation. Today a click id is an opaque string the gateway mints
//! (a UUIDv7 in the `rm_click` cookie) and invite-svc only bounds (64 characters), so the
//! whole rule sits behind [`parse_click_id`]. When signed click ids (code, time, key id, MAC)
//! land, point `parse_click_id` at their parser/verifier and keep the invariants below: any
//! input is refused or accepted without a panic, an accepted id is bounded, and every id
//! the gateway mints is accepted.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use referral_common::Violations;

/// Longest click id anyone accepts (invite-svc's `clickId` bound).
const MAX_CLICK_ID_CHARS: usize = 64;

/// Today's click-id check, exactly as `RecordSignup` and `RecordClick` apply it.
fn parse_click_id(input: &str) -> Result<&str, Vec<(String, String)>> {
    let mut v = Violations::default();
    invite_svc::grpc::check_len(&mut v, input, MAX_CLICK_ID_CHARS, "clickId");
    if v.is_empty() { Ok(input) } else { Err(v.0) }
}

/// What the gateway mints in `/r/{code}`: a UUIDv7, from the fuzzer's bytes.
fn minted(bytes: [u8; 16]) -> String {
    uuid::Builder::from_unix_timestamp_millis(
        u64::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], 0, 0]),
        &[
            bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14],
            bytes[15],
        ],
    )
    .into_uuid()
    .to_string()
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    presented: &'a str,
    mint: [u8; 16],
    secure: bool,
}

fuzz_target!(|input: Input<'_>| {
    match parse_click_id(input.presented) {
        Ok(id) => assert!(
            id.chars().count() <= MAX_CLICK_ID_CHARS,
            "an accepted id is bounded"
        ),
        Err(violations) => {
            assert!(
                violations.iter().all(|(field, _)| field == "clickId"),
                "{violations:?}"
            );
        }
    }
    let id = minted(input.mint);
    assert_eq!(parse_click_id(&id), Ok(id.as_str()), "a minted id is accepted");
    // The cookie that carries it is always a valid header value.
    let cookie = gateway::redirect::click_cookie(&id, input.secure);
    assert!(http_header_safe(&cookie), "{cookie}");
});

/// Visible ASCII and spaces only: what `HeaderValue::from_str` accepts without surprises.
fn http_header_safe(s: &str) -> bool {
    s.bytes().all(|b| b == b' ' || (0x21..0x7f).contains(&b))
}
