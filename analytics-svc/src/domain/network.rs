//! How much of the referral graph a member may see (issue #16): their own network at most
//! [`MAX_DEPTH`] levels deep (configurable lower, `MAX_NETWORK_DEPTH`), counts per level, and
//! only level 1 listed, by pseudonym.

use referral_common::pii::PiiKeys;
use referral_proto::analytics::v1::NetworkLevel;

use super::privacy::shown_referee;

/// The deepest a network is ever shown (the seeds' `maxNetworkDepth`).
pub const MAX_DEPTH: i32 = 3;
/// The most level-1 people one answer lists.
pub const FIRST_LEVEL_LIMIT: usize = 100;
/// A level past the first counting fewer people than this shows no number (docs/api.md:
/// aggregates over fewer than 5 people are suppressed).
pub const MIN_PEOPLE: i64 = 5;

/// The depth a request asks for: 0 (unset) means `max_depth`; otherwise 1 ..= `max_depth`.
pub fn depth(asked: i32, max_depth: i32) -> Result<i32, String> {
    match asked {
        0 => Ok(max_depth),
        d if (1..=max_depth).contains(&d) => Ok(d),
        _ => Err(format!("must be between 1 and {max_depth}")),
    }
}

/// Every level 1 ..= `depth` (zero where nobody was reached), levels past the first with
/// fewer than [`MIN_PEOPLE`] suppressed.
pub fn levels(depth: i32, counted: &[(i32, i64)]) -> Vec<NetworkLevel> {
    (1..=depth)
        .map(|level| {
            let people = counted.iter().find(|(l, _)| *l == level).map_or(0, |(_, n)| *n);
            let suppressed = level > 1 && people > 0 && people < MIN_PEOPLE;
            NetworkLevel {
                level,
                people: if suppressed { 0 } else { people },
                suppressed,
            }
        })
        .collect()
}

/// Level 1 as the API shows it: pseudonyms only (an erased person's stored pseudonym as is).
pub fn first_level(pii: &PiiKeys, ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| shown_referee(pii, id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_bounded_by_the_configured_maximum() {
        assert_eq!(depth(0, 3), Ok(3));
        assert_eq!(depth(2, 3), Ok(2));
        assert!(depth(4, 3).is_err());
        assert!(depth(3, 2).is_err());
        assert!(depth(-1, 3).is_err());
    }

    #[test]
    fn small_deep_levels_are_suppressed_and_missing_ones_are_zero() {
        let l = levels(3, &[(1, 2), (2, 3)]);
        let got: Vec<(i32, i64, bool)> = l.iter().map(|l| (l.level, l.people, l.suppressed)).collect();
        assert_eq!(got, [(1, 2, false), (2, 0, true), (3, 0, false)]);
        assert_eq!(levels(2, &[(2, 7)])[1].people, 7);
    }

    #[test]
    fn level_one_is_pseudonymous() {
        let pii = PiiKeys::for_tests();
        let shown = first_level(&pii, &["u1".into(), pii.pseudonym("u2")]);
        assert_eq!(shown, [pii.pseudonym("u1"), pii.pseudonym("u2")]);
    }
}
