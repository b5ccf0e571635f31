//! Filter scopes of the exact distinct-referrer counts. A referrer's invitation counts in
//! every scope its (flow, referrer kind, vendor type) matches; a query reads the one scope
//! its filters name. A flow implies the referrer's kind and a vendor type implies SUPPLIER,
//! so five scopes cover every filter combination.

use super::rollup::referrer_kind_of_flow;

/// The gap recorded for a referrer's first active day in a scope ("no previous day").
pub const FIRST: i64 = 1_000_000;

/// The scopes an invitation of this flow, referrer kind and vendor type counts in.
pub fn scopes_of(flow: &str, kind: &str, vendor: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    if !kind.is_empty() {
        out.push(format!("k={kind}"));
    }
    if !vendor.is_empty() {
        out.push(format!("v={vendor}"));
    }
    if !flow.is_empty() {
        out.push(format!("f={flow}"));
        if !vendor.is_empty() {
            out.push(format!("f={flow}|v={vendor}"));
        }
    }
    out
}

/// The scope a query's filters name; `None` when they contradict each other (a flow of
/// the other kind, a vendor type for couples): nobody matches.
pub fn scope_of_filter(flow: Option<&str>, kind: Option<&str>, vendor: Option<&str>) -> Option<String> {
    let implied = flow.map(referrer_kind_of_flow).or(vendor.map(|_| "SUPPLIER"));
    if let (Some(k), Some(i)) = (kind, implied)
        && k != i
    {
        return None;
    }
    if let (Some(f), Some(_)) = (flow, vendor)
        && referrer_kind_of_flow(f) != "SUPPLIER"
    {
        return None;
    }
    Some(match (flow, kind, vendor) {
        (Some(f), _, Some(v)) => format!("f={f}|v={v}"),
        (Some(f), _, None) => format!("f={f}"),
        (None, _, Some(v)) => format!("v={v}"),
        (None, Some(k), None) => format!("k={k}"),
        (None, None, None) => String::new(),
    })
}

/// How far back `active_since` reaches: a window of up to this many days is counted from it
/// exactly; a longer one falls back to the gap histograms. 92 covers a quarter, a month, the
/// default 30 days and a week. The backfill in migrations/*/0003 holds the same number.
pub const SINCE_DAYS: i64 = 92;

/// The `since_day`s whose `active_since` row on `day` counts a referrer active on `day` whose
/// previous active day was `gap` days before (`FIRST`: none): every `since` in
/// `(day - min(gap, SINCE_DAYS), day]`, so a window starting at `since` counts the referrer
/// on `day` exactly when it was not active in `[since, day)`.
pub fn since_days(day: i64, gap: i64) -> std::ops::RangeInclusive<i64> {
    day - gap.min(SINCE_DAYS) + 1..=day
}

/// Whether `active_since` answers distinct referrers over `[from, to]` exactly.
pub fn since_covers(from: i64, to: i64) -> bool {
    to - from < SINCE_DAYS
}

/// The `active_since` changes, as `(since_day, day, referrers)`, of a referrer's new active
/// `day` in a scope whose neighbouring active days there are `prev` and `next`: the new day
/// counts with its gap to `prev`, and `next` (if any) now reaches back only to `day`
/// instead of `prev`, so it stops counting for the windows starting in `(prev, day]`.
pub fn since_changes(day: i64, prev: Option<i64>, next: Option<i64>) -> Vec<(i64, i64, i64)> {
    let gap_from = |d: i64, p: Option<i64>| p.map_or(FIRST, |p| d - p);
    let mut out: Vec<(i64, i64, i64)> = since_days(day, gap_from(day, prev))
        .map(|s| (s, day, 1))
        .collect();
    if let Some(n) = next {
        let (before, after) = (since_days(n, gap_from(n, prev)), since_days(n, n - day));
        out.extend(before.filter(|s| !after.contains(s)).map(|s| (s, n, -1)));
    }
    out
}

/// Distinct referrers active in `[from, to]` (days) from a scope's gap histogram rows
/// `(day, gap, referrers)` inside the window: a referrer counts on its first active day
/// inside the window, the day whose gap reaches back before `from`.
pub fn distinct_in(rows: &[(i64, i64, i64)], from: i64, to: i64) -> i64 {
    rows.iter()
        .filter(|(day, gap, _)| (from..=to).contains(day) && *gap > day - from)
        .map(|(_, _, n)| n)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_every_filter_and_contradictions_match_nobody() {
        assert_eq!(
            scopes_of("SUPPLIER_TO_COUPLE", "SUPPLIER", "FLORIST"),
            vec![
                "",
                "k=SUPPLIER",
                "v=FLORIST",
                "f=SUPPLIER_TO_COUPLE",
                "f=SUPPLIER_TO_COUPLE|v=FLORIST"
            ]
        );
        assert_eq!(
            scopes_of("COUPLE_TO_COUPLE", "COUPLE", ""),
            vec!["", "k=COUPLE", "f=COUPLE_TO_COUPLE"]
        );
        assert_eq!(scope_of_filter(None, None, None).as_deref(), Some(""));
        assert_eq!(
            scope_of_filter(Some("SUPPLIER_TO_COUPLE"), Some("SUPPLIER"), None).as_deref(),
            Some("f=SUPPLIER_TO_COUPLE")
        );
        assert_eq!(
            scope_of_filter(None, Some("SUPPLIER"), Some("VENUE")).as_deref(),
            Some("v=VENUE")
        );
        assert_eq!(
            scope_of_filter(Some("COUPLE_TO_SUPPLIER"), Some("SUPPLIER"), None),
            None
        );
        assert_eq!(
            scope_of_filter(Some("COUPLE_TO_COUPLE"), None, Some("VENUE")),
            None
        );
        assert_eq!(scope_of_filter(None, Some("COUPLE"), Some("VENUE")), None);
        // Every scope a filter names is one an invitation matching it counts in.
        let scopes = scopes_of("SUPPLIER_TO_SUPPLIER", "SUPPLIER", "VENUE");
        for f in [
            scope_of_filter(Some("SUPPLIER_TO_SUPPLIER"), None, Some("VENUE")),
            scope_of_filter(None, Some("SUPPLIER"), None),
            scope_of_filter(None, None, Some("VENUE")),
        ] {
            assert!(scopes.contains(&f.unwrap()));
        }
    }

    /// Referrer a active days 1, 2, 5; b days 3, 10; c day 4 only. Their histogram rows
    /// (day, gap, n) are what the store keeps; a distinct count by hand for each window.
    #[test]
    fn distinct_referrers_from_gap_histograms_match_a_count_by_hand() {
        let rows = [
            (1, FIRST, 1), // a
            (2, 1, 1),     // a
            (3, FIRST, 1), // b
            (4, FIRST, 1), // c
            (5, 3, 1),     // a
            (10, 7, 1),    // b
        ];
        let by_hand = |from: i64, to: i64| {
            let days: [(&str, &[i64]); 3] = [("a", &[1, 2, 5]), ("b", &[3, 10]), ("c", &[4])];
            days.iter()
                .filter(|(_, ds)| ds.iter().any(|d| (from..=to).contains(d)))
                .count() as i64
        };
        for from in 0..12 {
            for to in from..12 {
                let inside: Vec<_> = rows
                    .iter()
                    .copied()
                    .filter(|r| (from..=to).contains(&r.0))
                    .collect();
                assert_eq!(
                    distinct_in(&inside, from, to),
                    by_hand(from, to),
                    "[{from}, {to}]"
                );
            }
        }
    }

    /// `active_since` rows left by `plan` (referrer, day) applied in that order, each new
    /// day through `since_changes` with its neighbours at that moment, as the consumer does.
    fn since_rows(plan: &[(&str, i64)]) -> std::collections::HashMap<(i64, i64), i64> {
        let mut days: std::collections::HashMap<&str, std::collections::BTreeSet<i64>> = Default::default();
        let mut rows = std::collections::HashMap::new();
        for (r, day) in plan {
            let mine = days.entry(r).or_default();
            if !mine.insert(*day) {
                continue;
            }
            let prev = mine.range(..day).next_back().copied();
            let next = mine.range(day + 1..).next().copied();
            for (since, d, n) in since_changes(*day, prev, next) {
                *rows.entry((since, d)).or_insert(0) += n;
            }
        }
        rows
    }

    fn since_sum(rows: &std::collections::HashMap<(i64, i64), i64>, from: i64, to: i64) -> i64 {
        (from..=to)
            .map(|d| rows.get(&(from, d)).copied().unwrap_or(0))
            .sum()
    }

    /// a active days 1, 2, 5; b 3, 10; c 4, arriving out of order (5 before 2, 10 before 3).
    #[test]
    fn active_since_by_hand() {
        let rows = since_rows(&[("a", 1), ("a", 5), ("b", 10), ("a", 2), ("b", 3), ("c", 4)]);
        // Window [2, 5]: a on day 2 (its gap 1 reaches back to day 1, before 2), b on 3 and
        // c on 4 (their first days); a's day 5 (gap 3, back to day 2) is not a first.
        assert_eq!(rows.get(&(2, 2)), Some(&1));
        assert_eq!(rows.get(&(2, 3)), Some(&1));
        assert_eq!(rows.get(&(2, 4)), Some(&1));
        assert_eq!(
            rows.get(&(2, 5)).copied().unwrap_or(0),
            0,
            "a's 5 counted before 2 arrived is taken back"
        );
        assert_eq!(since_sum(&rows, 2, 5), 3);
        // Window [5, 10]: a on 5, b on 10 (gap 7 back to day 3).
        assert_eq!((rows.get(&(5, 5)), rows.get(&(5, 10))), (Some(&1), Some(&1)));
        assert_eq!(since_sum(&rows, 5, 10), 2);
        // b's day 10 counted for every window start after day 3 up to 10; not for 3 itself.
        assert_eq!(rows.get(&(3, 10)).copied().unwrap_or(0), 0);
        assert_eq!(rows.get(&(4, 10)), Some(&1));
        // A first day counts for the SINCE_DAYS window starts ending on it.
        assert_eq!(rows.keys().filter(|(_, d)| *d == 1).count() as i64, SINCE_DAYS);
        assert_eq!(rows.get(&(1 - SINCE_DAYS + 1, 1)), Some(&1));
        assert_eq!(rows.get(&(1 - SINCE_DAYS, 1)), None);
    }

    /// x active on days 0, 100, 191, y on 50, 191: windows shorter than, as long as and
    /// longer than SINCE_DAYS (92).
    #[test]
    fn active_since_is_exact_up_to_its_reach_and_falls_back_beyond() {
        let plan = [("x", 191), ("y", 191), ("x", 0), ("y", 50), ("x", 100)];
        let rows = since_rows(&plan);
        // [150, 191], 42 days: x and y on day 191.
        assert!(since_covers(150, 191));
        assert_eq!(since_sum(&rows, 150, 191), 2);
        // [100, 191], exactly 92 days: x on 100 (x's 191 reaches back to 100: not a first),
        // y on 191 (its gap 141 is capped at 92, still reaching before 100).
        assert!(since_covers(100, 191));
        assert_eq!(since_sum(&rows, 100, 191), 2);
        // [99, 191], 93 days: beyond the reach, y's capped gap no longer reaches before 99
        // and the rollup would miss y, so such a window is counted from the gap histogram.
        assert!(!since_covers(99, 191));
        assert_eq!(since_sum(&rows, 99, 191), 1);
        let gaps = [
            (0, FIRST, 1),
            (100, 100, 1),
            (191, 91, 1),
            (50, FIRST, 1),
            (191, 141, 1),
        ];
        let inside: Vec<_> = gaps
            .iter()
            .copied()
            .filter(|r| (99..=191).contains(&r.0))
            .collect();
        assert_eq!(distinct_in(&inside, 99, 191), 2);
    }

    /// Five referrers on random days over 300, arriving in random order: every window of up
    /// to SINCE_DAYS days counts what a count by hand does.
    #[test]
    fn active_since_matches_a_count_by_hand_whatever_the_order() {
        use rand::{Rng, SeedableRng, seq::SliceRandom};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let names = ["p", "q", "r", "s", "t"];
        let mut plan: Vec<(&str, i64)> = (0..120)
            .map(|_| (names[rng.random_range(0..names.len())], rng.random_range(0..300)))
            .collect();
        plan.shuffle(&mut rng);
        let rows = since_rows(&plan);
        for from in 0..300 {
            for to in from..(from + SINCE_DAYS).min(300) {
                let by_hand = names
                    .iter()
                    .filter(|n| plan.iter().any(|(p, d)| p == *n && (from..=to).contains(d)))
                    .count() as i64;
                assert_eq!(since_sum(&rows, from, to), by_hand, "[{from}, {to}]");
            }
        }
        // No row goes negative: what is taken back was added first.
        assert!(rows.values().all(|n| *n >= 0));
    }
}
