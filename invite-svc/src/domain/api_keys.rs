//! The rules of an API key's definition: a name people can read, at least one known scope,
//! none twice; and how often a key's last use is written down.

use referral_common::{
    Violations,
    auth::{Scopes, scope::ScopeError},
    input,
};

/// Longest key name, in characters.
pub const NAME_MAX: usize = 100;
/// Scope names a request may list before the list is refused unread (there are five).
const SCOPES_LISTED_MAX: usize = 16;
/// A key's `lastUsedAt` moves at most this often: one write a minute for a busy key.
pub const LAST_USED_EVERY_MICROS: i64 = 60 * 1_000_000;

/// A key's name and scopes, checked: each problem names its JSON field.
pub fn definition(name: &str, scopes: &[String]) -> Result<(String, Scopes), Violations> {
    let mut v = Violations::default();
    v.require(name, "name");
    input::line(&mut v, name, NAME_MAX, "name");
    let parsed = if scopes.len() > SCOPES_LISTED_MAX {
        v.add("scopes", format!("must list at most {SCOPES_LISTED_MAX} scopes"));
        None
    } else {
        Scopes::parse_list(scopes)
            .map_err(|e: ScopeError| v.add("scopes", e.to_string()))
            .ok()
    };
    match (v.is_empty(), parsed) {
        (true, Some(scopes)) => Ok((name.trim().to_string(), scopes)),
        _ => Err(v),
    }
}

/// Whether a use at `now` should be written, given the last one written.
pub fn use_is_news(last_used_at: Option<i64>, now: i64) -> bool {
    last_used_at.is_none_or(|last| now.saturating_sub(last) >= LAST_USED_EVERY_MICROS)
}

#[cfg(test)]
mod tests {
    use referral_common::auth::Scope;

    use super::*;

    fn fields(r: Result<(String, Scopes), Violations>) -> Vec<String> {
        r.unwrap_err().0.into_iter().map(|(f, _)| f).collect()
    }

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_name_and_known_scopes_make_a_key() {
        let (name, scopes) = definition(" billing ", &list(&["conversions:write", "reports:read"])).unwrap();
        assert_eq!(name, "billing");
        assert!(scopes.contains(Scope::ConversionsWrite) && scopes.contains(Scope::ReportsRead));
        assert!(definition(&"é".repeat(NAME_MAX), &list(&["signups:write"])).is_ok());
    }

    #[test]
    fn each_problem_names_its_field() {
        let ok = list(&["conversions:write"]);
        for bad in ["", "   ", "bill\ning", "a\u{0}b", "x\u{2028}y"] {
            assert_eq!(fields(definition(bad, &ok)), ["name"], "{bad:?}");
        }
        assert_eq!(fields(definition(&"n".repeat(NAME_MAX + 1), &ok)), ["name"]);
        for bad in [
            list(&[]),
            list(&["admin"]),
            list(&["conversions:write", "conversions:write"]),
            list(&[""]),
            vec!["reports:read".to_string(); 17],
            vec!["x".repeat(100_000)],
        ] {
            assert_eq!(fields(definition("billing", &bad)), ["scopes"], "{bad:.40?}");
        }
        assert_eq!(fields(definition("", &list(&["nope"]))), ["name", "scopes"]);
    }

    #[test]
    fn last_use_is_written_at_most_once_a_minute() {
        let now = 1_000_000_000_000;
        assert!(use_is_news(None, now));
        assert!(!use_is_news(Some(now - 59_000_000), now));
        assert!(use_is_news(Some(now - 60_000_000), now));
        assert!(
            !use_is_news(Some(now + 5_000_000), now),
            "a clock step back is no news"
        );
        assert!(use_is_news(Some(i64::MIN), now));
    }
}
