//! Every metric's formula (API.md, analytics-svc), over plain numbers.

/// Badges in rank order; a referrer's tier is its highest badge.
pub const BADGES: [&str; 5] = ["BRONZE", "SILVER", "GOLD", "PLATINUM", "DIAMOND"];

/// `badges` (comma-separated, rank order) with `badge` added once.
pub fn add_badge(badges: &str, badge: &str) -> String {
    let mut have: Vec<&str> = badges.split(',').filter(|b| !b.is_empty()).collect();
    if !have.contains(&badge) {
        have.push(badge);
    }
    have.sort_by_key(|b| BADGES.iter().position(|x| x == b).unwrap_or(BADGES.len()));
    have.join(",")
}

/// The highest badge held, '' for none.
pub fn tier_of_badges(badges: &str) -> String {
    badges
        .split(',')
        .filter_map(|b| BADGES.iter().position(|x| *x == b))
        .max()
        .map(|i| BADGES[i].to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badges_accumulate_once_and_the_tier_is_the_highest() {
        let b = add_badge("", "SILVER");
        let b = add_badge(&b, "BRONZE");
        let b = add_badge(&b, "SILVER");
        assert_eq!(b, "BRONZE,SILVER");
        assert_eq!(tier_of_badges(&b), "SILVER");
        assert_eq!(tier_of_badges(""), "");
    }
}
