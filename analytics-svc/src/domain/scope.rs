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
}
