//! Postmark (HTTP Basic) webhooks through `verify_and_parse`: arbitrary Authorization headers
//! and bodies never panic; nothing is accepted unless the header carries exactly the known
//! `user:password`. With `sign` the right credentials are sent, so the payload parser sees
//! arbitrary bodies.
#![no_main]

use arbitrary::Arbitrary;
use base64::{Engine, engine::general_purpose::STANDARD};
use invite_svc::domain::webhooks::{WebhookError, verify_and_parse};
use libfuzzer_sys::fuzz_target;
use referral_fuzz::{
    NOW, POSTMARK_PASSWORD, POSTMARK_USER, header, headers, postmark_authorization, secrets,
};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    sign: bool,
    authorization: &'a str,
    extra: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let expected = format!("{POSTMARK_USER}:{POSTMARK_PASSWORD}");
    let authorization = if input.sign {
        postmark_authorization(expected.as_bytes())
    } else {
        input.authorization.to_string()
    };
    let mut h = headers(input.extra.iter().map(|(k, v)| (*k, v.to_string())));
    h.insert("authorization".into(), authorization);
    let result = verify_and_parse("postmark", &secrets(), &h, input.body, NOW);

    let genuine = header(&h, "authorization")
        .and_then(|a| a.strip_prefix("Basic ").or_else(|| a.strip_prefix("basic ")))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .is_some_and(|given| given == expected.as_bytes());
    match &result {
        Ok(events) => {
            assert!(genuine, "accepted without the credentials: {h:?}");
            assert_eq!(events.len(), 1);
        }
        Err(WebhookError::Unauthenticated(_)) => {
            assert!(!genuine, "the right credentials were refused: {h:?}")
        }
        Err(WebhookError::Malformed(_)) => assert!(genuine, "an unauthenticated body was read"),
        Err(WebhookError::NotConfigured(_)) => panic!("postmark is configured"),
    }
});
