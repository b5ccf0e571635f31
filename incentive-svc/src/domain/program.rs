//! Reward programs as data: the validated form the ledger computes with, its validation
//! (field errors named as the JSON body names them) and docs/api.md's default programs.

use chrono::{DateTime, Duration, Utc};
use referral_common::Violations;
use referral_proto::{
    common::v1::{Money, PartyKind},
    incentive::v1::{Badge, ConversionReward, Milestone, RewardProgram},
};

/// Ids of the programs that exist on first start.
pub const DEFAULT_SUPPLIER_PROGRAM: &str = "supplier-default";
pub const DEFAULT_COUPLE_PROGRAM: &str = "couple-default";

pub const DEFAULT_HOLD_DAYS: i64 = 14;
pub const DEFAULT_EXPIRY_DAYS: i64 = 365;
const MAX_DAYS: i64 = 3650;
const MAX_MILESTONES: usize = 50;
const MAX_NAME: usize = 200;
const MAX_ID: usize = 64;
/// No single reward above this (10 million major units): a typo guard, not a policy.
const MAX_AMOUNT_MINOR: i64 = 1_000_000_000;

/// One milestone tier: a reward (and maybe a badge) at `at` successful referrals.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub at: i32,
    pub reward_minor: i64,
    pub badge: Option<Badge>,
}

/// A program the ledger can compute with (validated; amounts in `currency`).
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub id: String,
    pub referrer_kind: PartyKind,
    pub currency: String,
    pub tiers: Vec<Tier>,
    /// The conversion reward in basis points of the referee's first payment (15% = 1500).
    pub percent_bp: i64,
    pub conversion_cap_minor: Option<i64>,
    pub referee_reward_minor: Option<i64>,
    pub hold: Duration,
    pub expiry: Duration,
    pub active: bool,
}

impl Program {
    /// When a reward booked at `at` becomes eligible and when it expires unclaimed.
    pub fn schedule(&self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        (at + self.hold, at + self.expiry)
    }
}

pub fn kind_name(kind: PartyKind) -> &'static str {
    match kind {
        PartyKind::Couple => "COUPLE",
        _ => "SUPPLIER",
    }
}

pub fn is_iso_currency(code: &str) -> bool {
    code.len() == 3
        && code.chars().all(|c| c.is_ascii_uppercase())
        && iso_currency::Currency::from_code(code).is_some()
}

fn duration_of(d: Option<&pbjson_types::Duration>) -> Option<Result<Duration, ()>> {
    d.map(|d| {
        if d.seconds < 0 || d.nanos < 0 || d.seconds > MAX_DAYS * 86_400 {
            Err(())
        } else {
            Ok(Duration::seconds(d.seconds) + Duration::nanoseconds(i64::from(d.nanos)))
        }
    })
}

/// A money field of the program: non-negative, bounded, in the program's currency (an
/// empty currency means the program's).
fn amount(v: &mut Violations, m: &Money, currency: &str, field: &str) -> i64 {
    if m.amount_minor < 0 {
        v.add(&format!("{field}.amountMinor"), "must not be negative");
    } else if m.amount_minor > MAX_AMOUNT_MINOR {
        v.add(
            &format!("{field}.amountMinor"),
            format!("must be at most {MAX_AMOUNT_MINOR}"),
        );
    }
    if !m.currency.is_empty() && m.currency != currency {
        v.add(
            &format!("{field}.currency"),
            format!("must be the program's currency ({currency})"),
        );
    }
    m.amount_minor
}

/// Validates a program as sent (the body of `PUT /v1/reward-programs/{id}`) with `id` from
/// the path. Field names are the JSON body's.
pub fn validate(id: &str, p: &RewardProgram) -> Result<Program, Violations> {
    let mut v = Violations::default();
    if id.is_empty()
        || id.len() > MAX_ID
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        v.add("id", format!("must be 1-{MAX_ID} letters, digits, '-' or '_'"));
    }
    if !p.id.is_empty() && p.id != id {
        v.add("id", "must match the id in the path");
    }
    if p.name.trim().is_empty() {
        v.add("name", "is required");
    } else {
        referral_common::input::line(&mut v, &p.name, MAX_NAME, "name");
    }
    let kind = match PartyKind::try_from(p.referrer_kind) {
        Ok(k @ (PartyKind::Supplier | PartyKind::Couple)) => k,
        _ => {
            v.add("referrerKind", "is required: SUPPLIER or COUPLE");
            PartyKind::Supplier
        }
    };
    if !is_iso_currency(&p.currency) {
        v.add("currency", "must be an ISO 4217 code such as GBP");
    }
    let currency = p.currency.as_str();

    if p.milestones.len() > MAX_MILESTONES {
        v.add("milestones", format!("at most {MAX_MILESTONES} tiers"));
    }
    let mut tiers = Vec::with_capacity(p.milestones.len());
    let mut last_at = 0;
    let mut last_badge = Badge::Unspecified;
    for (i, m) in p.milestones.iter().enumerate() {
        let field = format!("milestones[{i}]");
        if m.at <= 0 {
            v.add(&format!("{field}.at"), "must be at least 1");
        } else if m.at <= last_at {
            v.add(
                &format!("{field}.at"),
                format!("tiers must ascend: {} does not come after {last_at}", m.at),
            );
        }
        last_at = last_at.max(m.at);
        let reward = match &m.reward {
            Some(r) => amount(&mut v, r, currency, &format!("{field}.reward")),
            None => {
                v.add(&format!("{field}.reward"), "is required");
                0
            }
        };
        let badge = match m.badge.map(Badge::try_from) {
            None => None,
            Some(Ok(Badge::Unspecified)) | Some(Err(_)) => {
                v.add(
                    &format!("{field}.badge"),
                    "must be BRONZE, SILVER, GOLD, PLATINUM or DIAMOND",
                );
                None
            }
            Some(Ok(b)) => {
                if b <= last_badge {
                    v.add(&format!("{field}.badge"), "badges must ascend with the tiers");
                }
                last_badge = last_badge.max(b);
                Some(b)
            }
        };
        tiers.push(Tier {
            at: m.at,
            reward_minor: reward,
            badge,
        });
    }

    let (percent_bp, conversion_cap_minor) = match &p.conversion_reward {
        None => (0, None),
        Some(c) => {
            let bp = if !c.percent.is_finite() || !(0.0..=100.0).contains(&c.percent) {
                v.add("conversionReward.percent", "must be between 0 and 100");
                0
            } else {
                (c.percent * 100.0).round() as i64
            };
            let cap = c
                .cap
                .as_ref()
                .map(|m| amount(&mut v, m, currency, "conversionReward.cap"));
            (bp, cap)
        }
    };
    let referee_reward_minor = p
        .referee_reward
        .as_ref()
        .map(|m| amount(&mut v, m, currency, "refereeReward"));

    let hold = match duration_of(p.hold_period.as_ref()) {
        Some(Ok(d)) => d,
        Some(Err(())) => {
            v.add("holdPeriod", format!("must be between 0s and {MAX_DAYS} days"));
            Duration::zero()
        }
        None => days(&mut v, p.hold_days, DEFAULT_HOLD_DAYS, "holdDays"),
    };
    let expiry = match duration_of(p.expiry_period.as_ref()) {
        Some(Ok(d)) => d,
        Some(Err(())) => {
            v.add("expiryPeriod", format!("must be between 0s and {MAX_DAYS} days"));
            Duration::zero()
        }
        None => days(&mut v, p.expiry_days, DEFAULT_EXPIRY_DAYS, "expiryDays"),
    };
    if expiry <= hold {
        let field = if p.expiry_period.is_some() {
            "expiryPeriod"
        } else {
            "expiryDays"
        };
        v.add(field, "must be longer than the hold period");
    }
    if !v.is_empty() {
        return Err(v);
    }
    Ok(Program {
        id: id.to_string(),
        referrer_kind: kind,
        currency: currency.to_string(),
        tiers,
        percent_bp,
        conversion_cap_minor,
        referee_reward_minor,
        hold,
        expiry,
        active: p.active.unwrap_or(true),
    })
}

/// Whole days, 0 meaning the default.
fn days(v: &mut Violations, value: i32, default: i64, field: &str) -> Duration {
    let d = i64::from(value);
    if !(0..=MAX_DAYS).contains(&d) {
        v.add(
            field,
            format!("must be between 0 (the default, {default}) and {MAX_DAYS}"),
        );
        return Duration::days(default);
    }
    Duration::days(if d == 0 { default } else { d })
}

fn gbp(minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor: minor,
        currency: "GBP".into(),
    })
}

fn milestone(at: i32, minor: i64, badge: Option<Badge>) -> Milestone {
    Milestone {
        at,
        reward: gbp(minor),
        badge: badge.map(|b| b as i32),
    }
}

/// docs/api.md's supplier program: milestones 1 -> 25.00; 5 -> 100.00 + BRONZE; 10 -> 250.00 +
/// SILVER; 25 -> 500.00 + GOLD; 50 -> 1000.00 + PLATINUM; 100 -> 2000.00 + DIAMOND; 15% of
/// the referee's first payment; 14-day hold, 365-day expiry.
pub fn default_supplier() -> RewardProgram {
    RewardProgram {
        id: DEFAULT_SUPPLIER_PROGRAM.into(),
        name: "Supplier referrals".into(),
        referrer_kind: PartyKind::Supplier as i32,
        currency: "GBP".into(),
        milestones: vec![
            milestone(1, 2_500, None),
            milestone(5, 10_000, Some(Badge::Bronze)),
            milestone(10, 25_000, Some(Badge::Silver)),
            milestone(25, 50_000, Some(Badge::Gold)),
            milestone(50, 100_000, Some(Badge::Platinum)),
            milestone(100, 200_000, Some(Badge::Diamond)),
        ],
        conversion_reward: Some(ConversionReward {
            percent: 15.0,
            cap: None,
        }),
        referee_reward: None,
        hold_days: DEFAULT_HOLD_DAYS as i32,
        expiry_days: DEFAULT_EXPIRY_DAYS as i32,
        active: Some(true),
        ..Default::default()
    }
}

/// docs/api.md's couple program: the same milestones, 5% of the first payment capped at 50.00.
pub fn default_couple() -> RewardProgram {
    RewardProgram {
        id: DEFAULT_COUPLE_PROGRAM.into(),
        name: "Couple referrals".into(),
        referrer_kind: PartyKind::Couple as i32,
        conversion_reward: Some(ConversionReward {
            percent: 5.0,
            cap: gbp(5_000),
        }),
        ..default_supplier()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(r: Result<Program, Violations>) -> Vec<String> {
        r.err()
            .map(|v| v.0.into_iter().map(|(f, _)| f).collect())
            // Valid: no violated fields.
            .unwrap_or_default()
    }

    #[test]
    fn the_defaults_are_valid_and_say_what_api_md_says() {
        let s = validate(DEFAULT_SUPPLIER_PROGRAM, &default_supplier()).unwrap();
        assert_eq!(s.percent_bp, 1500);
        assert_eq!(s.tiers.len(), 6);
        assert_eq!(
            s.tiers[1],
            Tier {
                at: 5,
                reward_minor: 10_000,
                badge: Some(Badge::Bronze)
            }
        );
        assert_eq!(s.hold, Duration::days(14));
        assert_eq!(s.expiry, Duration::days(365));
        let c = validate(DEFAULT_COUPLE_PROGRAM, &default_couple()).unwrap();
        assert_eq!((c.percent_bp, c.conversion_cap_minor), (500, Some(5_000)));
        assert_eq!(c.referrer_kind, PartyKind::Couple);
    }

    #[test]
    fn a_program_is_active_unless_it_says_otherwise() {
        let mut p = default_supplier();
        p.active = None;
        assert!(validate(DEFAULT_SUPPLIER_PROGRAM, &p).unwrap().active);
        p.active = Some(false);
        assert!(!validate(DEFAULT_SUPPLIER_PROGRAM, &p).unwrap().active);
    }

    #[test]
    fn bad_programs_are_refused_field_by_field() {
        let mut p = default_supplier();
        p.id.clear();
        p.milestones[2].at = 3; // after 5
        p.milestones[0].reward = Some(Money {
            amount_minor: -1,
            currency: "GBP".into(),
        });
        p.conversion_reward = Some(ConversionReward {
            percent: 120.0,
            cap: None,
        });
        p.currency = "GBX".into();
        p.referee_reward = Some(Money {
            amount_minor: 100,
            currency: "EUR".into(),
        });
        let f = fields(validate("p1", &p));
        for want in [
            "milestones[2].at",
            "milestones[0].reward.amountMinor",
            "conversionReward.percent",
            "currency",
        ] {
            assert!(f.contains(&want.to_string()), "{want} in {f:?}");
        }
        let mut p = default_supplier();
        p.id.clear();
        p.milestones[3].badge = Some(Badge::Bronze as i32);
        assert_eq!(fields(validate("p1", &p)), ["milestones[3].badge"]);
        let mut p = default_supplier();
        p.id.clear();
        p.referrer_kind = 0;
        p.name = " ".into();
        assert_eq!(fields(validate("p 1", &p)), ["id", "name", "referrerKind"]);
    }

    #[test]
    fn a_short_hold_period_wins_over_days_and_must_be_shorter_than_expiry() {
        let mut p = default_supplier();
        p.id.clear();
        p.hold_period = Some(pbjson_types::Duration { seconds: 3, nanos: 0 });
        let prog = validate("p1", &p).unwrap();
        assert_eq!(prog.hold, Duration::seconds(3));
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            prog.schedule(at),
            (at + Duration::seconds(3), at + Duration::days(365))
        );
        p.expiry_period = Some(pbjson_types::Duration { seconds: 2, nanos: 0 });
        assert_eq!(fields(validate("p1", &p)), ["expiryPeriod"]);
        let mut p = default_supplier();
        p.id.clear();
        p.hold_days = -1;
        assert_eq!(fields(validate("p1", &p)), ["holdDays"]);
        assert!(is_iso_currency("EUR") && !is_iso_currency("eur") && !is_iso_currency("ABC"));
    }
}
