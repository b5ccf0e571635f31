//! Referral-code parsing (`invite_svc::domain::normalize_code`): never panics, and what it
//! accepts is canonical (upper case, a known prefix, six characters of the code alphabet),
//! normalises to itself, and has a kind.
#![no_main]

use invite_svc::domain::{CODE_ALPHABET, CODE_SUFFIX_LEN, code_kind, normalize_code};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let Ok(code) = normalize_code(input) else {
        return;
    };
    assert_eq!(
        code,
        input.trim().to_ascii_uppercase(),
        "only case and whitespace change"
    );
    let (prefix, suffix) = code.split_once('-').expect("a code has a separator");
    assert!(code_kind(&code).is_some(), "{prefix} is a known prefix");
    assert_eq!(suffix.len(), CODE_SUFFIX_LEN);
    assert!(suffix.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{suffix}");
    assert_eq!(normalize_code(&code).as_deref(), Ok(code.as_str()), "idempotent");
});
