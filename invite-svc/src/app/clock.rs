//! invite-svc's notion of "now" for scheduling and sending. The system clock in production;
//! tests move it (a Friday evening, then the Thursday it is due) so the scheduler can be
//! watched sending days ahead without waiting days.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, TimeDelta, Utc};

/// The system clock plus an offset that only tests change.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_us: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        let now = referral_common::ids::now();
        now.checked_add_signed(TimeDelta::microseconds(self.offset_us.load(Ordering::Relaxed)))
            .unwrap_or(now)
    }

    /// From now on the clock reads `at` and runs on from there.
    pub fn set(&self, at: DateTime<Utc>) {
        let offset = (at - referral_common::ids::now()).num_microseconds().unwrap_or(0);
        self.offset_us.store(offset, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_runs_on_from_the_set_instant() {
        let clock = Clock::system();
        assert!((clock.now() - Utc::now()).num_seconds().abs() < 2);
        let friday: DateTime<Utc> = "2030-01-04T23:00:00Z".parse().unwrap();
        let copy = clock.clone();
        clock.set(friday);
        let read = copy.now();
        assert!(read >= friday && read - friday < TimeDelta::seconds(2), "{read}");
    }
}
