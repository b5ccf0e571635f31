//! Leaderboards (docs/api.md): referrers ranked by referrals, revenue (in the reporting
//! currency, other currencies at their day's rate) or conversion rate, over a week, a month
//! or all time; every member and admin may read them.

use std::collections::{BTreeMap, BTreeSet};

use referral_common::{
    ApiResult, Violations,
    auth::{Principal, Scope},
    ids,
};
use referral_proto::{
    analytics::v1::{FxRate, Leaderboard, LeaderboardEntry, LeaderboardRequest, leaderboard_request},
    common::v1::{Money, PartyKind, VendorType},
};

use super::{enum_name, kind_of, limit};
use crate::{
    domain::{
        day_of,
        fx::{self, Rate},
        metrics,
    },
    store::{Ranking, RevenueRow, Store, StoreResult},
};

pub async fn get<S: Store>(
    store: &S,
    p: &Principal,
    r: &LeaderboardRequest,
    currency: &str,
) -> ApiResult<Leaderboard> {
    // Every member and admin may read it; an API key needs reports:read.
    p.authorize(Scope::ReportsRead, |_| Ok(()))?;
    let mut v = Violations::default();
    let kind = enum_name(&mut v, r.referrer_kind, "referrerKind", |x: PartyKind| {
        x.as_str_name()
    });
    let vendor = enum_name(&mut v, r.vendor_type, "vendorType", |x: VendorType| {
        x.as_str_name()
    });
    let n = limit(&mut v, r.limit);
    use leaderboard_request::{Metric as M, Period as P};
    let today = day_of(ids::now());
    let days = match P::try_from(r.period) {
        Ok(P::Unspecified | P::All) => None,
        Ok(P::Week) => Some((today - 6, today)),
        Ok(P::Month) => Some((today - 29, today)),
        Err(_) => {
            v.add("period", "must be WEEK, MONTH or ALL");
            None
        }
    };
    let ranking = match M::try_from(r.metric) {
        Ok(M::Unspecified | M::Referrals) => Ranking::Referrals,
        Ok(M::Revenue) => Ranking::Revenue,
        Ok(M::ConversionRate) => Ranking::ConversionRate,
        Err(_) => {
            v.add("metric", "must be REFERRALS, REVENUE or CONVERSION_RATE");
            Ranking::Referrals
        }
    };
    v.into_result()?;
    let board = Board {
        kind: kind.as_deref(),
        vendor: vendor.as_deref(),
        days,
        currency,
    };
    Ok(report(store, board, ranking, i64::from(n)).await?)
}

/// A leaderboard's conversion rate needs at least this many invitations behind it.
pub const RATE_MIN_INVITATIONS: i64 = metrics::MIN_PEOPLE;

/// Who a leaderboard ranks: referrers of a kind and a vendor type (None: any), over
/// `days` (None: all time), and the reporting currency of a REVENUE board.
#[derive(Debug, Clone, Copy)]
pub struct Board<'a> {
    pub kind: Option<&'a str>,
    pub vendor: Option<&'a str>,
    pub days: Option<(i64, i64)>,
    pub currency: &'a str,
}

pub async fn report<S: Store>(
    store: &S,
    b: Board<'_>,
    ranking: Ranking,
    limit: i64,
) -> StoreResult<Leaderboard> {
    if ranking == Ranking::Revenue {
        return revenue_board(store, b, limit).await;
    }
    let min = if ranking == Ranking::ConversionRate {
        RATE_MIN_INVITATIONS
    } else {
        0
    };
    let rows = store
        .leaderboard(b.kind, b.vendor, b.days, ranking, min, limit)
        .await?;
    if metrics::suppressed(rows.len() as i64) {
        return Ok(Leaderboard {
            suppressed: true,
            ..Default::default()
        });
    }
    let entries = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| LeaderboardEntry {
            rank: i as i32 + 1,
            value: match ranking {
                Ranking::Referrals => r.signups as f64,
                Ranking::Revenue => r.revenue_minor as f64,
                Ranking::ConversionRate => metrics::ratio(r.signups as f64, r.invitations as f64),
            },
            referrer_kind: kind_of(&r.referrer_kind) as i32,
            badges: r
                .badges
                .split(',')
                .filter(|b| !b.is_empty())
                .map(String::from)
                .collect(),
            tier: r.tier,
            referrer_id: r.referrer_id,
            ..Default::default()
        })
        .collect();
    Ok(Leaderboard {
        entries,
        ..Default::default()
    })
}

/// One referrer's revenue over a period: in the reporting currency (what it ranks by),
/// per currency as recorded, the rates used and the currencies that had none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevenueTotal {
    pub referrer_id: String,
    pub referrer_kind: String,
    pub tier: String,
    pub badges: String,
    pub converted: i128,
    pub by_currency: BTreeMap<String, i128>,
    /// (currency, effective day, rate text)
    pub rates: BTreeSet<(String, i64, String)>,
    pub unconverted: BTreeSet<String>,
}

/// Totals per referrer from the store's rows, ranked: by revenue in `currency`, money in
/// the reporting currency as is and other money at the rate effective on its day. Money
/// in a currency with no rate for its day cannot be compared, so it adds nothing to the
/// rank (never a guessed rate): it is listed per currency and as unconverted. Ties (and
/// referrers with only unconverted money, at 0) by referrer id. Sums are exact (i128).
pub fn rank_revenue(rows: Vec<RevenueRow>, currency: &str) -> Vec<RevenueTotal> {
    let mut totals: BTreeMap<String, RevenueTotal> = BTreeMap::new();
    for row in rows {
        let t = totals
            .entry(row.referrer_id.clone())
            .or_insert_with(|| RevenueTotal {
                referrer_id: row.referrer_id.clone(),
                referrer_kind: row.referrer_kind.clone(),
                tier: row.tier.clone(),
                badges: row.badges.clone(),
                ..Default::default()
            });
        let sum = t.by_currency.entry(row.currency.clone()).or_default();
        *sum = sum.saturating_add(row.amount_minor);
        if row.currency == currency {
            t.converted = t.converted.saturating_add(row.amount_minor);
            continue;
        }
        match row
            .rate
            .and_then(|(day, text)| Rate::parse(&text).ok().map(|r| (day, text, r)))
        {
            Some((day, text, rate)) if row.amount_minor != 0 => {
                t.converted =
                    t.converted
                        .saturating_add(fx::convert(row.amount_minor, &row.currency, currency, rate));
                t.rates.insert((row.currency, day, text));
            }
            Some(_) => {}
            None if row.amount_minor != 0 => {
                t.unconverted.insert(row.currency);
            }
            None => {}
        }
    }
    let mut ranked: Vec<RevenueTotal> = totals
        .into_values()
        .map(|mut t| {
            // Revenue taken back to nothing is no revenue.
            t.by_currency.retain(|_, v| *v != 0);
            t
        })
        .filter(|t| !t.by_currency.is_empty())
        .collect();
    ranked.sort_by(|a, b| {
        b.converted
            .cmp(&a.converted)
            .then_with(|| a.referrer_id.cmp(&b.referrer_id))
    });
    ranked
}

async fn revenue_board<S: Store>(store: &S, b: Board<'_>, limit: i64) -> StoreResult<Leaderboard> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let mut ranked = rank_revenue(store.revenue(b.kind, b.vendor, b.days).await?, b.currency);
    if ranked.len() < limit {
        // As before currencies were kept: referrers active in the period without revenue
        // follow, at 0.
        let others = store
            .leaderboard(b.kind, b.vendor, b.days, Ranking::Revenue, 0, limit as i64)
            .await?;
        for r in others {
            if ranked.len() >= limit {
                break;
            }
            if !ranked.iter().any(|t| t.referrer_id == r.referrer_id) {
                ranked.push(RevenueTotal {
                    referrer_id: r.referrer_id,
                    referrer_kind: r.referrer_kind,
                    tier: r.tier,
                    badges: r.badges,
                    ..Default::default()
                });
            }
        }
    }
    ranked.truncate(limit);
    if metrics::suppressed(ranked.len() as i64) {
        return Ok(Leaderboard {
            suppressed: true,
            currency: b.currency.into(),
            ..Default::default()
        });
    }
    let money = |amount: i128, currency: &str| Money {
        amount_minor: fx::clamp_i64(amount),
        currency: currency.into(),
    };
    let mut rates = BTreeSet::new();
    let mut unconverted = BTreeSet::new();
    let entries = ranked
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            rates.extend(t.rates.iter().cloned());
            unconverted.extend(t.unconverted.iter().cloned());
            LeaderboardEntry {
                rank: i as i32 + 1,
                referrer_id: t.referrer_id,
                referrer_kind: kind_of(&t.referrer_kind) as i32,
                value: t.converted as f64,
                tier: t.tier,
                badges: t
                    .badges
                    .split(',')
                    .filter(|b| !b.is_empty())
                    .map(String::from)
                    .collect(),
                revenue: Some(money(t.converted, b.currency)),
                revenue_by_currency: t.by_currency.iter().map(|(c, v)| money(*v, c)).collect(),
                unconverted_currencies: t.unconverted.into_iter().collect(),
            }
        })
        .collect();
    Ok(Leaderboard {
        entries,
        suppressed: false,
        currency: b.currency.into(),
        rates_used: rates
            .into_iter()
            .map(|(currency, day, rate)| FxRate {
                currency,
                rate,
                effective_from: fx::day_text(day),
                updated_at: None,
            })
            .collect(),
        unconverted_currencies: unconverted.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(referrer: &str, currency: &str, rate: Option<(i64, &str)>, amount: i128) -> RevenueRow {
        RevenueRow {
            referrer_id: referrer.into(),
            referrer_kind: "SUPPLIER".into(),
            tier: String::new(),
            badges: String::new(),
            currency: currency.into(),
            rate: rate.map(|(d, r)| (d, r.to_string())),
            amount_minor: amount,
        }
    }

    #[test]
    fn revenue_ranks_converted_money_and_lists_the_rest() {
        let ranked = rank_revenue(
            vec![
                // a: 10.00 GBP + 100.00 EUR at 0.85 (day 5) + 10.00 EUR at 0.9 (day 9).
                row("a", "GBP", None, 1_000),
                row("a", "EUR", Some((5, "0.85")), 10_000),
                row("a", "EUR", Some((9, "0.9")), 1_000),
                // b: 1 000 000 JPY with no rate: listed, ranked at 0.
                row("b", "JPY", None, 1_000_000),
                // c: 90.00 GBP.
                row("c", "GBP", None, 9_000),
                // d: revenue taken back to nothing: not listed.
                row("d", "GBP", None, 0),
            ],
            "GBP",
        );
        let order: Vec<(&str, i128)> = ranked
            .iter()
            .map(|t| (t.referrer_id.as_str(), t.converted))
            .collect();
        assert_eq!(order, vec![("a", 1_000 + 8_500 + 900), ("c", 9_000), ("b", 0)]);
        let a = &ranked[0];
        assert_eq!(a.by_currency.get("EUR"), Some(&11_000));
        assert_eq!(a.rates.len(), 2);
        assert!(a.unconverted.is_empty());
        assert_eq!(ranked[2].unconverted.iter().collect::<Vec<_>>(), vec!["JPY"]);
        assert_eq!(ranked[2].by_currency.get("JPY"), Some(&1_000_000));
    }

    #[test]
    fn revenue_sums_never_overflow() {
        // Two rows each far past i64: exact in i128, clamped only on the wire.
        let big = i128::from(i64::MAX) * 3;
        let ranked = rank_revenue(
            vec![row("a", "GBP", None, big), row("a", "EUR", Some((1, "2")), big)],
            "GBP",
        );
        assert_eq!(ranked[0].converted, big * 3);
        assert_eq!(fx::clamp_i64(ranked[0].converted), i64::MAX);
    }
}
