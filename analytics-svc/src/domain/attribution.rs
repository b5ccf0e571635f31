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
            for (x, t) in w.iter_mut().zip(touches) {
                let age = (at - t.at).max(0) as f64;
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

/// `amount` split by `weights` into whole minor units that add up to `amount`: each gets
/// the floor of its share, the units left over go to the largest remainders (ties: earlier).
pub fn split_minor(amount: i64, weights: &[f64]) -> Vec<i64> {
    if weights.is_empty() {
        return vec![];
    }
    let sign = amount.signum();
    let total = amount.unsigned_abs() as f64;
    let raw: Vec<f64> = weights.iter().map(|w| w * total).collect();
    let mut out: Vec<i64> = raw.iter().map(|r| r.floor() as i64).collect();
    let mut left = amount.abs() - out.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..raw.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (raw[a] - raw[a].floor(), raw[b] - raw[b].floor());
        rb.partial_cmp(&ra)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    for i in order.iter().cycle().take(order.len() * 2) {
        if left <= 0 {
            break;
        }
        out[*i] += 1;
        left -= 1;
    }
    out.into_iter().map(|x| x * sign).collect()
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
}
