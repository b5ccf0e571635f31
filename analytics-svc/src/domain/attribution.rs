//! The five attribution models: how much of a conversion each of its touches earns.
//! Weights sum to 1; revenue is split into exact minor units (largest remainder), so the
//! credited amounts always add up to the conversion's value.

use super::{DAY_SECONDS, rollup::Touch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    FirstTouch,
    LastTouch,
    Linear,
    /// Each touch weighs 2^(-age / 7 days) at the conversion, normalised.
    TimeDecay,
    /// 40% first, 40% last, 20% shared by the touches between (two touches: 50/50).
    PositionBased,
}

pub const MODELS: [Model; 5] = [
    Model::FirstTouch,
    Model::LastTouch,
    Model::Linear,
    Model::TimeDecay,
    Model::PositionBased,
];

/// Time decay's half-life.
pub const HALF_LIFE_SECONDS: f64 = 7.0 * DAY_SECONDS as f64;

impl Model {
    pub fn as_str(self) -> &'static str {
        match self {
            Model::FirstTouch => "FIRST_TOUCH",
            Model::LastTouch => "LAST_TOUCH",
            Model::Linear => "LINEAR",
            Model::TimeDecay => "TIME_DECAY",
            Model::PositionBased => "POSITION_BASED",
        }
    }

    pub fn parse(s: &str) -> Option<Model> {
        MODELS.into_iter().find(|m| m.as_str() == s)
    }
}

/// Each touch's share of the conversion (touches in time order; `at` the conversion).
pub fn weights(model: Model, touches: &[Touch], at: i64) -> Vec<f64> {
    let n = touches.len();
    if n == 0 {
        return vec![];
    }
    let mut w = vec![0.0; n];
    match model {
        Model::FirstTouch => w[0] = 1.0,
        Model::LastTouch => w[n - 1] = 1.0,
        Model::Linear => w.iter_mut().for_each(|x| *x = 1.0 / n as f64),
        Model::TimeDecay => {
            // Ages are counted from the newest touch, not the conversion: normalising cancels
            // the common factor, and the newest touch weighing 1 keeps the sum >= 1 however
            // long after the touches the conversion comes (2^-age underflows to 0 after ~20
            // years, and 0/0 would split nothing).
            let newest = touches.iter().map(|t| t.at.min(at)).max().unwrap_or(at);
            for (x, t) in w.iter_mut().zip(touches) {
                let age = (newest - t.at.min(at)).max(0) as f64;
                *x = 0.5f64.powf(age / HALF_LIFE_SECONDS);
            }
            let sum: f64 = w.iter().sum();
            w.iter_mut().for_each(|x| *x /= sum);
        }
        Model::PositionBased => match n {
            1 => w[0] = 1.0,
            2 => w = vec![0.5, 0.5],
            _ => {
                w[0] = 0.4;
                w[n - 1] = 0.4;
                let middle = 0.2 / (n - 2) as f64;
                w[1..n - 1].iter_mut().for_each(|x| *x = middle);
            }
        },
    }
    w
}

/// `amount` split by `weights` into whole minor units that add up to `amount` exactly: each
/// gets the floor of its share, the units left over go to the largest remainders (ties:
/// earlier). Float error can leave the floors a unit over or under whatever the weights; the
/// difference is settled unit by unit (taken from the smallest remainders, never below 0),
/// so the parts always sum to the conversion.
pub fn split_minor(amount: i64, weights: &[f64]) -> Vec<i64> {
    if weights.is_empty() {
        return vec![];
    }
    let sign = amount.signum();
    let total = amount.unsigned_abs();
    let sum: f64 = weights.iter().map(|w| w.max(0.0)).sum();
    let raw: Vec<f64> = if sum.is_finite() && sum > 0.0 {
        weights.iter().map(|w| w.max(0.0) / sum * total as f64).collect()
    } else {
        // Nothing to go by: an even split.
        vec![total as f64 / weights.len() as f64; weights.len()]
    };
    let mut out: Vec<u64> = raw.iter().map(|r| (r.floor() as u64).min(total)).collect();
    let mut order: Vec<usize> = (0..raw.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (raw[a] - raw[a].floor(), raw[b] - raw[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let mut given: u64 = out.iter().sum();
    // At most one unit per part either way (floors are within one of the exact share), but
    // loop until settled: the invariant is the sum, not the bound.
    while given < total {
        for &i in &order {
            if given == total {
                break;
            }
            out[i] += 1;
            given += 1;
        }
    }
    while given > total {
        for &i in order.iter().rev() {
            if given == total {
                break;
            }
            if out[i] > 0 {
                out[i] -= 1;
                given -= 1;
            }
        }
    }
    out.into_iter()
        .map(|x| sign * i64::try_from(x).unwrap_or(i64::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(referrer: &str, day: i64) -> Touch {
        Touch {
            referrer_id: referrer.into(),
            channel: "EMAIL".into(),
            at: day * DAY_SECONDS,
        }
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-9, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn each_model_by_hand() {
        // Touches on days 0, 7 and 14; conversion on day 14.
        let t = [touch("a", 0), touch("b", 7), touch("c", 14)];
        let at = 14 * DAY_SECONDS;
        close(&weights(Model::FirstTouch, &t, at), &[1.0, 0.0, 0.0]);
        close(&weights(Model::LastTouch, &t, at), &[0.0, 0.0, 1.0]);
        close(&weights(Model::Linear, &t, at), &[1.0 / 3.0; 3]);
        // Ages 14, 7, 0 days: raw weights 1/4, 1/2, 1 -> normalised by 7/4.
        close(
            &weights(Model::TimeDecay, &t, at),
            &[1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0],
        );
        close(&weights(Model::PositionBased, &t, at), &[0.4, 0.2, 0.4]);
        let four = [touch("a", 0), touch("b", 1), touch("c", 2), touch("d", 3)];
        close(&weights(Model::PositionBased, &four, at), &[0.4, 0.1, 0.1, 0.4]);
        close(&weights(Model::PositionBased, &t[..2], at), &[0.5, 0.5]);
        close(&weights(Model::TimeDecay, &t[..1], at), &[1.0]);
    }

    #[test]
    fn revenue_splits_into_exact_minor_units() {
        assert_eq!(split_minor(10_000, &[1.0 / 3.0; 3]), vec![3334, 3333, 3333]);
        assert_eq!(split_minor(100, &[0.4, 0.2, 0.4]), vec![40, 20, 40]);
        assert_eq!(split_minor(1, &[0.4, 0.2, 0.4]), vec![1, 0, 0]);
        let w = weights(
            Model::TimeDecay,
            &[touch("a", 0), touch("b", 7), touch("c", 14)],
            14 * DAY_SECONDS,
        );
        let s = split_minor(2500, &w);
        assert_eq!(s.iter().sum::<i64>(), 2500);
        assert_eq!(s, vec![357, 714, 1429]);
        assert_eq!(split_minor(-100, &[0.5, 0.5]), vec![-50, -50]);
    }

    /// The truth table's numbers (tests/tests/attribution_truth.rs), at the domain level:
    /// touches 14 and 7 days before a conversion of 12,346 at the third touch.
    #[test]
    fn the_truth_tables_split_by_hand() {
        let t = [touch("a", 0), touch("b", 7), touch("c", 14)];
        let at = 14 * DAY_SECONDS;
        let split = |m| split_minor(12_346, &weights(m, &t, at));
        assert_eq!(split(Model::FirstTouch), [12_346, 0, 0]);
        assert_eq!(split(Model::LastTouch), [0, 0, 12_346]);
        assert_eq!(split(Model::Linear), [4_116, 4_115, 4_115]);
        assert_eq!(split(Model::TimeDecay), [1_764, 3_527, 7_055]);
        assert_eq!(split(Model::PositionBased), [4_939, 2_469, 4_938]);
        // Two touches a day apart, the conversion a day after the second.
        let two = [touch("p1", 0), touch("p2", 1)];
        let split = |m| split_minor(4_999, &weights(m, &two, 2 * DAY_SECONDS));
        assert_eq!(split(Model::Linear), [2_500, 2_499]);
        assert_eq!(split(Model::PositionBased), [2_500, 2_499]);
        assert_eq!(split(Model::TimeDecay), [2_376, 2_623]);
        // One touch takes everything in every model.
        for m in MODELS {
            assert_eq!(split_minor(4_999, &weights(m, &two[..1], DAY_SECONDS)), [4_999]);
        }
    }

    #[test]
    fn a_conversion_decades_after_its_touches_still_splits_in_full() {
        // 2^(-age / 7 days) underflows to 0 for every touch after ~20 years; counted from
        // the newest touch the weights stay those of the touches' spacing.
        let t = [touch("a", 0), touch("b", 7)];
        let at = 40 * 365 * DAY_SECONDS;
        close(&weights(Model::TimeDecay, &t, at), &[1.0 / 3.0, 2.0 / 3.0]);
        assert_eq!(split_minor(900, &weights(Model::TimeDecay, &t, at)), [300, 600]);
        // Weights that say nothing still split the whole amount, evenly.
        assert_eq!(split_minor(10, &[0.0, 0.0]), [5, 5]);
        assert_eq!(split_minor(10, &[f64::NAN, f64::NAN, f64::NAN]), [4, 3, 3]);
        assert_eq!(split_minor(7, &[f64::INFINITY, 1.0]), [4, 3]);
    }

    #[test]
    fn every_split_sums_to_the_conversion_exactly() {
        // A fixed pseudo-random walk over amounts up to the 10^11 cap, 1-12 touches at any
        // second of a 30-day window, and a conversion up to 10 years later.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..20_000 {
            let amount = 1 + (next(100_000_000_000) >> next(37)) as i64;
            let n = 1 + next(12) as usize;
            let mut touches: Vec<Touch> = (0..n)
                .map(|i| Touch {
                    referrer_id: format!("r{i}"),
                    channel: String::new(),
                    at: next(30 * DAY_SECONDS as u64) as i64,
                })
                .collect();
            touches.sort_by_key(|t| t.at);
            let at = touches[n - 1].at + next(3_650 * DAY_SECONDS as u64) as i64;
            for m in MODELS {
                let w = weights(m, &touches, at);
                let parts = split_minor(amount, &w);
                assert_eq!(parts.iter().sum::<i64>(), amount, "{m:?} {amount} {w:?}");
                assert!(parts.iter().all(|p| *p >= 0), "{m:?} {amount} {parts:?}");
                let refund = split_minor(-amount, &w);
                assert_eq!(refund.iter().sum::<i64>(), -amount, "{m:?}");
            }
        }
    }
}
