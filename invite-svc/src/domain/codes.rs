//! Referral codes: `PREFIX-XXXXXX`, memorable and easy to read aloud or copy from a card.

use rand::Rng;

use super::party::PartyKind;
use super::shown;

/// Characters of the random part. Look-alikes are left out (no `0`/`O`, no `1`/`I`/`L`) so a
/// code copied by hand from print cannot be misread.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Length of the random part: 31^6 ≈ 887 million suffixes per prefix, so collisions (which
/// the store still rejects; retry on them) are rare.
pub const CODE_SUFFIX_LEN: usize = 6;

/// Prefixes of codes held by suppliers.
pub const SUPPLIER_PREFIXES: [&str; 5] = ["LOVE", "WED", "DREAM", "BLISS", "CHARM"];

/// Prefixes of codes held by couples.
pub const COUPLE_PREFIXES: [&str; 5] = ["COUPLE", "UNITY", "FOREVER", "HEARTS", "VOWS"];

const SEPARATOR: char = '-';

/// Longer input cannot be a code (the longest is `FOREVER-XXXXXX`, 14 characters); the margin
/// only keeps error messages about near misses specific.
const MAX_CODE_INPUT_LEN: usize = 32;

/// Why a string is not a referral code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("referral code is empty")]
    Empty,
    #[error("referral code is too long ({len} characters); codes look like LOVE-7K3M9P")]
    TooLong { len: usize },
    #[error("referral code `{input}` has no `-`; codes look like LOVE-7K3M9P")]
    MissingSeparator { input: String },
    #[error("referral code prefix `{prefix}` is not one of ours ({})", known_prefixes())]
    UnknownPrefix { prefix: String },
    #[error(
        "referral code contains `{ch}`, which codes never use \
         (they use letters and digits 2-9, without 0, O, 1, I or L)"
    )]
    InvalidCharacter { ch: char },
    #[error(
        "referral code has {len} characters after the `-`; it needs {}",
        CODE_SUFFIX_LEN
    )]
    WrongLength { len: usize },
}

/// The shareable link of a code.
pub fn code_url(public_url: &str, code: &str) -> String {
    format!("{}/r/{code}", public_url.trim_end_matches('/'))
}

/// The prefixes a party of `kind` draws its codes from.
pub fn prefixes(kind: PartyKind) -> &'static [&'static str] {
    match kind {
        PartyKind::Supplier => &SUPPLIER_PREFIXES,
        PartyKind::Couple => &COUPLE_PREFIXES,
    }
}

/// A fresh random code for a party of `kind`, already in canonical form.
///
/// Uniqueness is the store's job: insert, and generate again on a collision.
pub fn generate_code(kind: PartyKind, rng: &mut impl Rng) -> String {
    let choices = prefixes(kind);
    let prefix = choices[rng.random_range(0..choices.len())];
    let mut code = String::with_capacity(prefix.len() + 1 + CODE_SUFFIX_LEN);
    code.push_str(prefix);
    code.push(SEPARATOR);
    for _ in 0..CODE_SUFFIX_LEN {
        code.push(char::from(
            CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())],
        ));
    }
    code
}

/// The canonical (upper-case) form of a code as a person typed it: surrounding whitespace
/// is dropped and case ignored, because codes are looked up case-insensitively; anything
/// else that is wrong is reported rather than guessed at.
pub fn normalize_code(input: &str) -> Result<String, CodeError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(CodeError::Empty);
    }
    let len = trimmed.chars().count();
    if len > MAX_CODE_INPUT_LEN {
        return Err(CodeError::TooLong { len });
    }
    let upper = trimmed.to_ascii_uppercase();
    let Some((prefix, suffix)) = upper.split_once(SEPARATOR) else {
        return Err(CodeError::MissingSeparator {
            input: shown(trimmed),
        });
    };
    if prefix_kind(prefix).is_none() {
        return Err(CodeError::UnknownPrefix {
            prefix: shown(prefix),
        });
    }
    if let Some(ch) = suffix.chars().find(|c| !is_code_char(*c)) {
        return Err(CodeError::InvalidCharacter { ch });
    }
    if suffix.len() != CODE_SUFFIX_LEN {
        return Err(CodeError::WrongLength { len: suffix.len() });
    }
    Ok(upper)
}

/// Whose code this is, read from its prefix; `None` if it is not a canonical code's prefix.
pub fn code_kind(code: &str) -> Option<PartyKind> {
    code.split_once(SEPARATOR)
        .and_then(|(prefix, _)| prefix_kind(prefix))
}

fn prefix_kind(prefix: &str) -> Option<PartyKind> {
    [PartyKind::Supplier, PartyKind::Couple]
        .into_iter()
        .find(|kind| prefixes(*kind).contains(&prefix))
}

fn is_code_char(c: char) -> bool {
    c.is_ascii() && CODE_ALPHABET.contains(&(c as u8))
}

fn known_prefixes() -> String {
    SUPPLIER_PREFIXES
        .iter()
        .chain(COUPLE_PREFIXES.iter())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn alphabet_has_no_look_alikes_and_no_duplicates() {
        assert_eq!(CODE_ALPHABET.len(), 31);
        for c in b"0O1IL" {
            assert!(!CODE_ALPHABET.contains(c), "{}", char::from(*c));
        }
        let distinct: HashSet<_> = CODE_ALPHABET.iter().collect();
        assert_eq!(distinct.len(), CODE_ALPHABET.len());
    }

    #[test]
    fn generated_codes_use_the_kinds_prefixes_and_normalize_to_themselves() {
        let mut rng = StdRng::seed_from_u64(7);
        for kind in PartyKind::ALL.iter().copied() {
            let mut seen_prefixes = HashSet::new();
            for _ in 0..500 {
                let code = generate_code(kind, &mut rng);
                let (prefix, suffix) = code.split_once('-').unwrap();
                assert!(prefixes(kind).contains(&prefix), "{code}");
                assert_eq!(suffix.len(), CODE_SUFFIX_LEN);
                assert_eq!(normalize_code(&code), Ok(code.clone()));
                assert_eq!(code_kind(&code), Some(kind));
                seen_prefixes.insert(prefix.to_owned());
            }
            assert_eq!(seen_prefixes.len(), prefixes(kind).len());
        }
    }

    #[test]
    fn generated_suffixes_cover_the_whole_alphabet() {
        let mut rng = StdRng::seed_from_u64(42);
        let mut seen = HashSet::new();
        for _ in 0..300 {
            let code = generate_code(PartyKind::Couple, &mut rng);
            seen.extend(code.split_once('-').unwrap().1.bytes());
        }
        assert_eq!(seen.len(), CODE_ALPHABET.len());
    }

    #[test]
    fn generated_codes_differ() {
        let mut rng = StdRng::seed_from_u64(1);
        let codes: HashSet<_> = (0..1000)
            .map(|_| generate_code(PartyKind::Supplier, &mut rng))
            .collect();
        assert_eq!(codes.len(), 1000);
    }

    #[test]
    fn normalize_accepts_any_case_and_surrounding_whitespace() {
        assert_eq!(normalize_code("LOVE-7K3M9P"), Ok("LOVE-7K3M9P".into()));
        assert_eq!(normalize_code("  love-7k3m9p\n"), Ok("LOVE-7K3M9P".into()));
        assert_eq!(normalize_code("Forever-ABCDEF"), Ok("FOREVER-ABCDEF".into()));
        assert_eq!(normalize_code("vows-222222"), Ok("VOWS-222222".into()));
    }

    #[test]
    fn normalize_rejects_empty_and_overlong_input() {
        assert_eq!(normalize_code(""), Err(CodeError::Empty));
        assert_eq!(normalize_code(" \t "), Err(CodeError::Empty));
        assert_eq!(
            normalize_code(&"A".repeat(40)),
            Err(CodeError::TooLong { len: 40 })
        );
    }

    #[test]
    fn normalize_requires_the_separator() {
        assert_eq!(
            normalize_code("love7k3m9p"),
            Err(CodeError::MissingSeparator {
                input: "love7k3m9p".into()
            })
        );
    }

    #[test]
    fn normalize_rejects_unknown_prefixes() {
        assert_eq!(
            normalize_code("hate-7K3M9P"),
            Err(CodeError::UnknownPrefix {
                prefix: "HATE".into()
            })
        );
        let msg = normalize_code("X-7K3M9P").unwrap_err().to_string();
        assert!(msg.contains("LOVE, WED, DREAM, BLISS, CHARM, COUPLE"), "{msg}");
    }

    #[test]
    fn normalize_names_look_alikes_and_foreign_characters() {
        for (input, ch) in [
            ("LOVE-7K3M9O", 'O'),
            ("LOVE-7K3M90", '0'),
            ("love-7k3m9l", 'L'),
            ("LOVE-1K3M9P", '1'),
            ("LOVE-7K3M9I", 'I'),
            ("LOVE-7K-M9P", '-'),
            ("LOVE-7K M9P", ' '),
            ("LOVE-7K3M9é", 'é'),
        ] {
            assert_eq!(
                normalize_code(input),
                Err(CodeError::InvalidCharacter { ch }),
                "{input}"
            );
        }
        let msg = normalize_code("LOVE-7K3M9O").unwrap_err().to_string();
        assert!(msg.contains("without 0, O, 1, I or L"), "{msg}");
    }

    #[test]
    fn normalize_checks_the_suffix_length() {
        assert_eq!(
            normalize_code("LOVE-7K3M9"),
            Err(CodeError::WrongLength { len: 5 })
        );
        assert_eq!(
            normalize_code("LOVE-7K3M9PQ"),
            Err(CodeError::WrongLength { len: 7 })
        );
        assert_eq!(normalize_code("LOVE-"), Err(CodeError::WrongLength { len: 0 }));
    }

    #[test]
    fn code_kind_reads_the_prefix() {
        assert_eq!(code_kind("CHARM-ABCDEF"), Some(PartyKind::Supplier));
        assert_eq!(code_kind("HEARTS-ABCDEF"), Some(PartyKind::Couple));
        assert_eq!(code_kind("hearts-ABCDEF"), None);
        assert_eq!(code_kind("NOPE"), None);
    }
}
