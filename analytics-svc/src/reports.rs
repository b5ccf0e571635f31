//! Each metric assembled from rollup rows and the formulas in `domain::metrics`: the store
//! answers sums, this module turns them into the API's messages (suppressing any aggregate
//! over fewer than 5 people). What "people" means per report:
//! - viral, funnel, time series, cohorts: the distinct referrers behind the numbers (a
//!   referrer's own funnel: the people it invited, one per invitation);
//! - attribution and leaderboards: the referrers listed;
//! - the funnel's RETAINED and churn: under the funnel's own rule (its referrers);
//! - experiments: the people a variant was sent to.

use std::collections::{BTreeMap, BTreeSet};

use referral_proto::{
    analytics::v1::{
        AttributionReport, Cohort, CohortPeriod, Cohorts, CreditedChannel, CreditedReferrer,
        ExperimentResults, FlowMetrics, Funnel, FunnelStage, FxRate, GrowthStatus, Leaderboard,
        LeaderboardEntry, SuperConnector, SuperConnectors, Timeseries, TimeseriesPoint, VariantResult,
        ViralMetrics,
    },
    common::v1::{AttributionModel, Flow, Money, PartyKind},
};

use crate::{
    domain::{
        DAY_SECONDS,
        attribution::Model,
        fx::{self, Rate},
        metrics::{self, Counts, Granularity, Growth},
        scope::{distinct_in, scope_of_filter},
    },
    store::{CreditKey, DaySums, Ranking, RevenueRow, Store, StoreResult, Window},
};

pub const FLOWS: [Flow; 4] = [
    Flow::SupplierToCouple,
    Flow::CoupleToSupplier,
    Flow::SupplierToSupplier,
    Flow::CoupleToCouple,
];

/// Distinct referrers with an invitation in the window, exactly, for the window's filters
/// and for each flow in `flows` instead of the window's own (`None`: the window's flow).
async fn referrers<S: Store>(store: &S, w: &Window, flows: &[Option<&str>]) -> StoreResult<Vec<i64>> {
    let scopes: Vec<Option<String>> = flows
        .iter()
        .map(|f| {
            scope_of_filter(
                f.or(w.flow.as_deref()),
                w.referrer_kind.as_deref(),
                w.vendor_type.as_deref(),
            )
        })
        .collect();
    let wanted: Vec<String> = scopes.iter().flatten().cloned().collect();
    let counts = store.distinct_referrers(&wanted, w.from_day, w.to_day).await?;
    Ok(scopes
        .iter()
        .map(|s| {
            s.as_ref()
                .and_then(|s| counts.iter().find(|(c, _)| c == s).map(|(_, n)| *n))
                .unwrap_or(0)
        })
        .collect())
}

fn total(rows: &[DaySums]) -> DaySums {
    let mut t = DaySums::default();
    rows.iter().for_each(|r| t.add(r));
    t
}

fn counts(referrers: i64, s: &DaySums) -> Counts {
    Counts {
        referrers,
        invitations: s.invitations,
        signups: s.signups,
        conversions: s.conversions,
    }
}

fn growth(g: Growth) -> GrowthStatus {
    match g {
        Growth::Viral => GrowthStatus::Viral,
        Growth::NearViral => GrowthStatus::NearViral,
        Growth::SubViral => GrowthStatus::SubViral,
    }
}

pub async fn viral<S: Store>(store: &S, w: &Window) -> StoreResult<ViralMetrics> {
    let rows = store.day_sums(w).await?;
    let all = total(&rows);
    let flows: Vec<Flow> = FLOWS
        .into_iter()
        .filter(|f| w.flow.as_deref().is_none_or(|x| x == f.as_str_name()))
        .collect();
    let mut asked: Vec<Option<&str>> = vec![None];
    asked.extend(flows.iter().map(|f| Some(f.as_str_name())));
    let counted = referrers(store, w, &asked).await?;
    let people = counted[0];
    let mut by_flow = Vec::new();
    let mut flow_k = BTreeMap::new();
    let mut flow_cycle = BTreeMap::new();
    for (flow, n) in flows.into_iter().zip(counted[1..].iter().copied()) {
        let name = flow.as_str_name();
        let sums = total(
            &rows
                .iter()
                .filter(|r| r.flow == name)
                .cloned()
                .collect::<Vec<_>>(),
        );
        let v = metrics::viral(counts(n, &sums));
        let cycle = metrics::mean_days(sums.cycle_seconds, sums.cycle_signups);
        flow_k.insert(name, v.k_factor);
        flow_cycle.insert(name, cycle);
        let mut m = FlowMetrics {
            flow: flow as i32,
            suppressed: metrics::suppressed(n),
            ..Default::default()
        };
        if !m.suppressed {
            m.referrers = n;
            m.invitations = sums.invitations;
            m.signups = sums.signups;
            m.conversions = sums.conversions;
            m.invites_per_referrer = v.invites_per_referrer;
            m.conversion_rate = v.conversion_rate;
            m.k_factor = v.k_factor;
            m.cycle_time_days = cycle;
        }
        by_flow.push(m);
    }
    let mut out = ViralMetrics {
        from: Some(to_ts_day(w.from_day)),
        to: Some(to_ts_day(w.to_day + 1)),
        suppressed: metrics::suppressed(people),
        by_flow,
        ..Default::default()
    };
    if out.suppressed {
        return Ok(out);
    }
    let v = metrics::viral(counts(people, &all));
    let s2c = Flow::SupplierToCouple.as_str_name();
    let c2s = Flow::CoupleToSupplier.as_str_name();
    let k = |f| flow_k.get(f).copied().unwrap_or(0.0);
    let cycle = metrics::cycle_time_days(
        flow_cycle.get(s2c).copied().flatten(),
        flow_cycle.get(c2s).copied().flatten(),
    );
    out.referrers = people;
    out.invitations = all.invitations;
    out.signups = all.signups;
    out.conversions = all.conversions;
    out.invites_per_referrer = v.invites_per_referrer;
    out.conversion_rate = v.conversion_rate;
    out.k_factor = v.k_factor;
    out.loop_k = metrics::loop_k(k(s2c), k(c2s));
    out.cycle_time_days = cycle;
    out.doubling_time_days = metrics::doubling_time_days(cycle, v.k_factor);
    out.growth_status = growth(metrics::growth_status(v.k_factor)) as i32;
    Ok(out)
}

pub async fn funnel<S: Store>(store: &S, w: &Window, referrer_id: &str) -> StoreResult<Funnel> {
    let (rows, people) = if referrer_id.is_empty() {
        (store.day_sums(w).await?, None)
    } else {
        (store.referrer_day_sums(referrer_id, w).await?, Some(()))
    };
    let all = total(&rows);
    let people = match people {
        // A referrer's own funnel is over the people it invited.
        Some(()) => all.invitations,
        None => referrers(store, w, &[None]).await?[0],
    };
    if metrics::suppressed(people) {
        return Ok(Funnel {
            suppressed: true,
            ..Default::default()
        });
    }
    // RETAINED: ACTIVATED less those whose referee churned by the window's last day.
    let churned = store
        .churned((!referrer_id.is_empty()).then_some(referrer_id), w)
        .await?;
    let [sent, delivered, opened, clicked, signed_up, converted, activated] = all.stages();
    let retained = (activated - churned).max(0);
    let (stages, bottleneck) = metrics::funnel([
        sent, delivered, opened, clicked, signed_up, converted, activated, retained,
    ]);
    Ok(Funnel {
        suppressed: false,
        churned,
        churn_rate: metrics::ratio(churned as f64, activated as f64),
        stages: stages
            .into_iter()
            .map(|s| FunnelStage {
                stage: s.stage.into(),
                count: s.count,
                step_rate: s.step_rate,
            })
            .collect(),
        bottleneck: bottleneck.unwrap_or_default().into(),
    })
}

pub fn to_ts_day(day: i64) -> referral_proto::Timestamp {
    referral_proto::Timestamp {
        seconds: day * DAY_SECONDS,
        nanos: 0,
    }
}

/// The metrics a time series can show.
pub const SERIES: [&str; 5] = ["invitations", "signups", "conversions", "revenue", "k_factor"];

pub async fn timeseries<S: Store>(
    store: &S,
    w: &Window,
    g: Granularity,
    metric: &str,
) -> StoreResult<Timeseries> {
    let rows = store.day_sums(w).await?;
    let gaps = match scope_of_filter(
        w.flow.as_deref(),
        w.referrer_kind.as_deref(),
        w.vendor_type.as_deref(),
    ) {
        Some(scope) => store.gap_rows(&scope, w.from_day, w.to_day).await?,
        None => vec![],
    };
    let mut points = Vec::new();
    let mut start = metrics::period_start(w.from_day, g);
    while start <= w.to_day {
        let next = next_period(start, g);
        let (from, to) = (start.max(w.from_day), (next - 1).min(w.to_day));
        let sums = total(
            &rows
                .iter()
                .filter(|r| (from..=to).contains(&r.day))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let inside: Vec<_> = gaps
            .iter()
            .copied()
            .filter(|r| (from..=to).contains(&r.0))
            .collect();
        let people = distinct_in(&inside, from, to);
        let suppressed = metrics::suppressed(people);
        let value = match metric {
            _ if suppressed => 0.0,
            "signups" => sums.signups as f64,
            "conversions" => sums.conversions as f64,
            "revenue" => sums.revenue_minor as f64,
            "k_factor" => metrics::viral(counts(people, &sums)).k_factor,
            _ => sums.invitations as f64,
        };
        points.push(TimeseriesPoint {
            period_start: Some(to_ts_day(start)),
            value,
            suppressed,
        });
        start = next;
    }
    Ok(Timeseries {
        metric: metric.into(),
        points,
    })
}

/// The first day of the period after the one starting on `start`.
fn next_period(start: i64, g: Granularity) -> i64 {
    match g {
        Granularity::Day => start + 1,
        Granularity::Week => start + 7,
        Granularity::Month => metrics::period_start(start + 31, g),
    }
}

pub async fn cohorts<S: Store>(store: &S, w: &Window, g: Granularity) -> StoreResult<Cohorts> {
    let Some(scope) = scope_of_filter(
        w.flow.as_deref(),
        w.referrer_kind.as_deref(),
        w.vendor_type.as_deref(),
    ) else {
        return Ok(Cohorts::default());
    };
    let rows = store.cohort_rows(&scope, w).await?;
    let mut sizes: BTreeMap<i64, i64> = BTreeMap::new();
    for (first, n) in &rows.sizes {
        *sizes.entry(metrics::period_start(*first, g)).or_default() += n;
    }
    // (cohort start, offset) -> (signups, conversions)
    let mut outcomes: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for (first, day, s, c) in &rows.outcomes {
        let start = metrics::period_start(*first, g);
        let e = outcomes
            .entry((start, metrics::periods_between(start, *day, g)))
            .or_default();
        e.0 += s;
        e.1 += c;
    }
    let last = metrics::period_start(w.to_day, g);
    let cohorts = sizes
        .into_iter()
        .map(|(start, n)| {
            let suppressed = metrics::suppressed(n);
            let mut periods = Vec::new();
            if !suppressed {
                let (mut s, mut c) = (0, 0);
                for offset in 0..=metrics::periods_between(start, last, g) {
                    let (ds, dc) = outcomes.get(&(start, offset)).copied().unwrap_or_default();
                    s += ds;
                    c += dc;
                    periods.push(CohortPeriod {
                        offset: offset as i32,
                        cumulative_signups: s,
                        cumulative_conversions: c,
                    });
                }
            }
            Cohort {
                period_start: Some(to_ts_day(start)),
                referrers: if suppressed { 0 } else { n },
                suppressed,
                periods,
            }
        })
        .collect();
    Ok(Cohorts { cohorts })
}

pub async fn attribution<S: Store>(
    store: &S,
    w: &Window,
    model: Model,
    api: AttributionModel,
) -> StoreResult<AttributionReport> {
    let by_referrer = store.credits(model.as_str(), CreditKey::Referrer, w).await?;
    let people = by_referrer
        .iter()
        .map(|c| &c.key)
        .collect::<std::collections::BTreeSet<_>>()
        .len() as i64;
    let mut out = AttributionReport {
        model: api as i32,
        suppressed: metrics::suppressed(people),
        ..Default::default()
    };
    if out.suppressed {
        return Ok(out);
    }
    let money = |minor: i64, currency: &str| Money {
        amount_minor: minor,
        currency: currency.into(),
    };
    out.by_referrer = by_referrer
        .iter()
        .map(|c| CreditedReferrer {
            referrer_id: c.key.clone(),
            revenue: Some(money(c.revenue_minor, &c.currency)),
            conversions: c.conversions,
        })
        .collect();
    out.by_channel = store
        .credits(model.as_str(), CreditKey::Channel, w)
        .await?
        .into_iter()
        .map(|c| CreditedChannel {
            channel: c.key,
            revenue: Some(money(c.revenue_minor, &c.currency)),
            conversions: c.conversions,
        })
        .collect();
    Ok(out)
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

pub async fn leaderboard<S: Store>(
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

fn kind_of(name: &str) -> PartyKind {
    PartyKind::from_str_name(name).unwrap_or(PartyKind::Unspecified)
}

pub async fn super_connectors<S: Store>(store: &S, today: i64, limit: usize) -> StoreResult<SuperConnectors> {
    let mut connectors: Vec<SuperConnector> = store
        .connectors(metrics::MIN_CONNECTIONS)
        .await?
        .into_iter()
        .map(|r| {
            let (mean_strength, recency_boost, score) = metrics::connector_score(&metrics::Connector {
                connections: r.invitations,
                stage_sum: r.stage_sum,
                successes: r.conversions,
                days_since_active: today - r.last_day,
            });
            SuperConnector {
                referrer_kind: kind_of(&r.referrer_kind) as i32,
                connections: r.invitations,
                mean_strength,
                successes: r.conversions,
                recency_boost,
                score,
                tier: metrics::connector_tier(score).into(),
                second_order_reach: r.second_order_reach,
                referrer_id: r.referrer_id,
            }
        })
        .collect();
    connectors.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.referrer_id.cmp(&b.referrer_id))
    });
    connectors.truncate(limit);
    Ok(SuperConnectors { connectors })
}

/// The control variant's name when a template has one; otherwise the first variant is.
pub const CONTROL: &str = "control";

pub async fn experiment<S: Store>(
    store: &S,
    template_id: &str,
    w: &Window,
) -> StoreResult<ExperimentResults> {
    let rows = store.experiment(template_id, w).await?;
    let control = rows
        .iter()
        .position(|(v, _, _)| v.eq_ignore_ascii_case(CONTROL))
        .unwrap_or(0);
    let (c_sent, c_signups) = rows.get(control).map(|r| (r.1, r.2)).unwrap_or_default();
    let variants = rows
        .iter()
        .enumerate()
        .map(|(i, (variant, sent, signups))| {
            let suppressed = metrics::suppressed(*sent);
            let mut r = VariantResult {
                variant: variant.clone(),
                control: i == control,
                suppressed,
                p_value: 1.0,
                ..Default::default()
            };
            if !suppressed {
                let (rate, lift, p) = if i == control || metrics::suppressed(c_sent) {
                    (metrics::ratio(*signups as f64, *sent as f64), 0.0, 1.0)
                } else {
                    metrics::experiment(*sent, *signups, c_sent, c_signups)
                };
                r.sent = *sent;
                r.signups = *signups;
                r.rate = rate;
                r.lift = lift;
                r.p_value = p;
            }
            r
        })
        .collect();
    Ok(ExperimentResults {
        template_id: template_id.into(),
        variants,
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
