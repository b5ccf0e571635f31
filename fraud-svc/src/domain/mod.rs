//! fraud-svc's rules as pure functions over plain data, unit-tested without a database.
//!
//! - [`signals`]: the weighted signals (velocity, similarity, IP clustering, timing
//!   regularity, conversion speed, disposable e-mail, fraud ring), one function each.
//! - [`rules`]: the hard rules that reject regardless of score.
//! - [`identity`]: normalised e-mails and names, recipient keys, disposable domains, ring
//!   link keys.
//! - [`ring`]: the union-find decision of fraud rings (who merges into whom).
//! - this module: the configuration ([`Scoring`]), what the store gathers for one
//!   assessment ([`Evidence`]) and the decision ([`Scoring::evaluate`]).
//!
//! Money is at stake where a referral earns a reward, so the weighted score guards signups
//! and conversions; invitations get the hard rules and hygiene notes only (weight 0), so a
//! supplier importing two hundred real clients is never treated as a fraudster.

pub mod identity;
pub mod ring;
pub mod rules;
pub mod signals;

use chrono::{DateTime, Duration, Utc};

/// How far back each window looks.
pub const VELOCITY_WINDOW: Duration = Duration::hours(24);
pub const REFEREE_WINDOW: Duration = Duration::days(7);
pub const RECIPIENT_WINDOW: Duration = Duration::days(30);
pub const DEVICE_WINDOW: Duration = Duration::hours(24);
/// At most this many of the referrer's recent referees are compared for similarity.
pub const PEER_LIMIT: i64 = 200;
/// Timing regularity looks at the referrer's most recent signups, at most this many.
pub const TIMING_MAX_EVENTS: usize = 20;
/// Window counts read at most this many index entries (more shows as "N+").
pub const COUNT_CAP: u32 = 1000;
/// The conversion-speed signal: a conversion within this long of its click raises the fraud
/// score (by `Weights::conversion_speed`; docs/api.md, "conversion speed 0.10 (< 5 minutes
/// from click)"). The default of `FRAUD_CONVERSION_SPEED_MIN`, which overrides it.
pub const CONVERSION_SPEED_MIN: Duration = Duration::minutes(5);

/// A count over a bounded window read: `capped` when the read stopped at its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub n: u32,
    pub capped: bool,
}

impl Count {
    pub fn exact(n: u32) -> Count {
        Count { n, capped: false }
    }

    /// From a read limited to `cap` rows.
    pub fn of(n: i64, cap: u32) -> Count {
        let n = u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        Count { n, capped: n >= cap }
    }

    pub fn shown(&self) -> String {
        if self.capped {
            format!("{}+", self.n)
        } else {
            self.n.to_string()
        }
    }
}

/// The cap a window count needs to decide `more than limit`.
pub fn count_cap(limit: u32) -> u32 {
    COUNT_CAP.max(limit.saturating_add(1))
}

/// Another recent referee of the same referrer.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub referee_id: String,
    pub email_local: String,
    pub name: String,
    pub occurred_at: DateTime<Utc>,
}

/// One weighted signal and why it did or did not fire.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub name: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub weight: f64,
    pub triggered: bool,
    pub detail: String,
}

/// A hard rule that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHit {
    pub name: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    Invitation,
    Signup,
    Conversion,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Invitation => "INVITATION",
            SubjectKind::Signup => "SIGNUP",
            SubjectKind::Conversion => "CONVERSION",
        }
    }

    pub fn parse(s: &str) -> Option<SubjectKind> {
        match s {
            "INVITATION" => Some(SubjectKind::Invitation),
            "SIGNUP" => Some(SubjectKind::Signup),
            "CONVERSION" => Some(SubjectKind::Conversion),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Low,
    Medium,
    High,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Low => "LOW",
            Level::Medium => "MEDIUM",
            Level::High => "HIGH",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Approve,
    Review,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "APPROVE",
            Action::Review => "REVIEW",
            Action::Reject => "REJECT",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "APPROVE" => Some(Action::Approve),
            "REVIEW" => Some(Action::Review),
            "REJECT" => Some(Action::Reject),
            _ => None,
        }
    }
}

/// The weights of the scored signals (docs/api.md's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub velocity: f64,
    pub similarity: f64,
    pub ip_cluster: f64,
    pub timing: f64,
    pub conversion_speed: f64,
    pub disposable: f64,
    pub fraud_ring: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            velocity: 0.30,
            similarity: 0.25,
            ip_cluster: 0.20,
            timing: 0.15,
            conversion_speed: 0.10,
            disposable: 0.25,
            fraud_ring: 0.20,
        }
    }
}

/// Every weight and threshold of the decision (all configurable, docs/api.md's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    pub weights: Weights,
    /// Velocity fires above this many referred signups in 24 h.
    pub velocity_limit: u32,
    /// Similarity fires above this (0..1).
    pub similarity_threshold: f64,
    /// IP clustering fires at this many of the referrer's referees from one IP in 7 days.
    pub ip_cluster_min: u32,
    /// Timing regularity fires below this coefficient of variation...
    pub timing_max_cv: f64,
    /// ...over at least this many signups.
    pub timing_min_events: usize,
    /// Conversion speed fires under this from click to conversion.
    pub conversion_speed_min: Duration,
    /// Score above this: MEDIUM / REVIEW.
    pub review_above: f64,
    /// Score above this: HIGH / REJECT.
    pub reject_above: f64,
    /// A recipient invited by more than this many referrers in 30 days is refused.
    pub recipient_referrer_limit: u32,
    /// More than this many invitations from one device in 24 h is refused...
    pub device_invitation_limit: u32,
    /// ...unless the device acted for one referrer only (see [`rules::device_invitation_flood`]).
    pub device_single_referrer_exempt: bool,
    /// A fraud ring larger than this raises every member's score.
    pub cluster_size_limit: u32,
    /// Loopback, private and link-local IPs link nobody into a ring.
    pub ring_ignores_non_public_ips: bool,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            weights: Weights::default(),
            velocity_limit: 10,
            similarity_threshold: 0.8,
            ip_cluster_min: 5,
            timing_max_cv: 0.1,
            timing_min_events: 5,
            conversion_speed_min: CONVERSION_SPEED_MIN,
            review_above: 0.4,
            reject_above: 0.7,
            recipient_referrer_limit: 3,
            device_invitation_limit: 100,
            device_single_referrer_exempt: true,
            cluster_size_limit: 10,
            ring_ignores_non_public_ips: true,
        }
    }
}

/// A cluster as the ring signal sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSize {
    pub id: String,
    pub size: u32,
}

/// Everything the store gathered for one assessment (bounded windows, read via indexes).
#[derive(Debug, Clone)]
pub struct Evidence {
    pub kind: SubjectKind,
    pub referrer_id: String,
    /// The referee's user id (signups, conversions).
    pub referee_id: String,
    /// What the rules need of the e-mail: the referee's, or an invitation's recipient's.
    pub email: identity::EmailTraits,
    /// Normalised name (similarity).
    pub name: String,
    /// The keyed hashes of the IP and device (empty when unknown): equality only, never shown.
    pub ip_key: String,
    pub device_key: String,
    pub occurred_at: DateTime<Utc>,
    /// The attributed click (conversion speed).
    pub click_at: Option<DateTime<Utc>>,
    /// The referee's e-mail / device found among the referrer's own.
    pub referrer_match: rules::ReferrerMatch,
    /// Signups referred by the referrer in the 24 h before `occurred_at` (this one included).
    pub signups_24h: Count,
    /// The referrer's referees in the 7 days before `occurred_at`, newest first.
    pub peers: Vec<Peer>,
    /// The referrer's referees from `ip` in 7 days (this one included).
    pub same_ip_referees: Count,
    /// Invitations: whether the recipient is known (address or key).
    pub recipient_known: bool,
    /// Invitations: different referrers who invited the recipient in 30 days (this one included).
    pub recipient_referrers: Count,
    /// Invitations from the device in 24 h, and for how many referrers (this one included).
    pub device_invitations: Count,
    pub device_referrers: Count,
    /// The largest cluster the referee (or referrer) belongs to.
    pub cluster: Option<ClusterSize>,
}

impl Evidence {
    pub fn new(kind: SubjectKind, occurred_at: DateTime<Utc>) -> Evidence {
        Evidence {
            kind,
            referrer_id: String::new(),
            referee_id: String::new(),
            email: identity::EmailTraits::default(),
            name: String::new(),
            ip_key: String::new(),
            device_key: String::new(),
            occurred_at,
            click_at: None,
            referrer_match: rules::ReferrerMatch::default(),
            signups_24h: Count::default(),
            peers: Vec::new(),
            same_ip_referees: Count::default(),
            recipient_known: false,
            recipient_referrers: Count::default(),
            device_invitations: Count::default(),
            device_referrers: Count::default(),
            cluster: None,
        }
    }
}

/// The decision, with every signal and every rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub score: f64,
    pub level: Level,
    pub action: Action,
    pub signals: Vec<Signal>,
    pub rules: Vec<RuleHit>,
}

impl Scoring {
    /// Score = sum of the triggered weights (capped at 1); above `reject_above` HIGH /
    /// REJECT, above `review_above` MEDIUM / REVIEW, else LOW / APPROVE. Any hard rule makes
    /// it HIGH / REJECT whatever the score.
    pub fn decide(&self, signals: Vec<Signal>, rules: Vec<RuleHit>) -> Verdict {
        let sum: f64 = signals.iter().filter(|s| s.triggered).map(|s| s.weight).sum();
        // Rounded so that 0.25 + 0.15 compares as 0.4, not 0.4000000000000001.
        let score = signals::round(sum.clamp(0.0, 1.0));
        let (level, action) = if !rules.is_empty() || score > self.reject_above {
            (Level::High, Action::Reject)
        } else if score > self.review_above {
            (Level::Medium, Action::Review)
        } else {
            (Level::Low, Action::Approve)
        };
        Verdict {
            score,
            level,
            action,
            signals,
            rules,
        }
    }

    pub fn evaluate(&self, e: &Evidence) -> Verdict {
        match e.kind {
            SubjectKind::Invitation => self.evaluate_invitation(e),
            SubjectKind::Signup | SubjectKind::Conversion => self.evaluate_referral(e),
        }
    }

    /// Invitations: hard rules and hygiene notes only, never a velocity score.
    fn evaluate_invitation(&self, e: &Evidence) -> Verdict {
        let recipient = rules::RefereeIdentity {
            user_id: "",
            email_known: e.email.known,
            // The recipient's device is unknown; the invitation's device is the referrer's.
            device_known: false,
        };
        let rule_hits: Vec<RuleHit> = [
            rules::self_referral(&e.referrer_id, &recipient, &e.referrer_match),
            rules::recipient_invited_by_many(e.recipient_referrers, self.recipient_referrer_limit),
            rules::device_invitation_flood(
                !e.device_key.is_empty(),
                e.device_invitations,
                e.device_referrers,
                self.device_invitation_limit,
                self.device_single_referrer_exempt,
            ),
            rules::disposable_recipient(&e.email),
        ]
        .into_iter()
        .flatten()
        .collect();
        let hygiene = vec![
            signals::recipient_referrers(
                e.recipient_known,
                e.recipient_referrers,
                self.recipient_referrer_limit,
            ),
            signals::device_invitations(
                !e.device_key.is_empty(),
                e.device_invitations,
                e.device_referrers,
                self.device_invitation_limit,
                self.device_single_referrer_exempt,
            ),
            signals::disposable_email(&e.email, 0.0),
        ];
        self.decide(hygiene, rule_hits)
    }

    /// Signups and conversions: the weighted score plus self-referral.
    fn evaluate_referral(&self, e: &Evidence) -> Verdict {
        let w = &self.weights;
        let has_referrer = !e.referrer_id.is_empty();
        let local = e.email.local.as_str();
        let times: Vec<DateTime<Utc>> = e
            .peers
            .iter()
            .take(TIMING_MAX_EVENTS)
            .map(|p| p.occurred_at)
            .collect();
        let converted_at = (e.kind == SubjectKind::Conversion).then_some(e.occurred_at);
        let mut list = vec![
            signals::velocity(e.signups_24h, self.velocity_limit, w.velocity),
            signals::similarity(
                &e.referee_id,
                local,
                &e.name,
                &e.peers,
                self.similarity_threshold,
                w.similarity,
            ),
            signals::ip_cluster(
                !e.ip_key.is_empty(),
                e.same_ip_referees,
                self.ip_cluster_min,
                w.ip_cluster,
            ),
            signals::timing_regularity(&times, self.timing_max_cv, self.timing_min_events, w.timing),
            signals::conversion_speed(
                e.click_at,
                converted_at,
                self.conversion_speed_min,
                w.conversion_speed,
            ),
            signals::disposable_email(&e.email, w.disposable),
            signals::fraud_ring(
                e.cluster.as_ref().map(|c| (c.id.as_str(), c.size)),
                self.cluster_size_limit,
                w.fraud_ring,
            ),
        ];
        if !has_referrer {
            // Nobody to credit: the referrer's windows say nothing.
            for s in list.iter_mut().take(4) {
                s.triggered = false;
                s.detail = "no referrer: not a referral".into();
            }
        }
        let referee = rules::RefereeIdentity {
            user_id: &e.referee_id,
            email_known: e.email.known,
            device_known: !e.device_key.is_empty(),
        };
        let rule_hits: Vec<RuleHit> = rules::self_referral(&e.referrer_id, &referee, &e.referrer_match)
            .into_iter()
            .collect();
        self.decide(list, rule_hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    /// A referrer's history kept in memory, windows computed the way the store does.
    #[derive(Default)]
    struct History {
        referees: Vec<(String, String, String, String, DateTime<Utc>)>, // id, email, name, ip, at
    }

    impl History {
        fn signup(
            &mut self,
            scoring: &Scoring,
            id: &str,
            email: &str,
            ip: &str,
            when: DateTime<Utc>,
        ) -> Verdict {
            let email = identity::normalize_email(email).unwrap();
            self.referees
                .push((id.into(), email.clone(), String::new(), ip.into(), when));
            let mut e = Evidence::new(SubjectKind::Signup, when);
            e.referrer_id = "ref-1".into();
            e.referee_id = id.into();
            e.email = identity::EmailTraits::of(&email);
            e.ip_key = ip.into();
            e.signups_24h = Count::exact(
                self.referees
                    .iter()
                    .filter(|r| r.4 > when - VELOCITY_WINDOW && r.4 <= when)
                    .count() as u32,
            );
            let mut peers: Vec<Peer> = self
                .referees
                .iter()
                .filter(|r| r.4 > when - REFEREE_WINDOW && r.4 <= when)
                .map(|r| Peer {
                    referee_id: r.0.clone(),
                    email_local: identity::email_local(&r.1).into(),
                    name: r.2.clone(),
                    occurred_at: r.4,
                })
                .collect();
            peers.sort_by_key(|p| std::cmp::Reverse(p.occurred_at));
            e.peers = peers;
            e.same_ip_referees = Count::exact(self.referees.iter().filter(|r| r.3 == ip).count() as u32);
            scoring.evaluate(&e)
        }
    }

    fn fired(v: &Verdict) -> Vec<&'static str> {
        v.signals.iter().filter(|s| s.triggered).map(|s| s.name).collect()
    }

    #[test]
    fn twelve_lookalike_signups_a_minute_apart_from_one_ip() {
        // Hand-computed: #1 nothing fires (0); #2-#4 similarity (0.25) -> APPROVE;
        // #5-#10 + IP clustering (5 from one IP) + timing (gaps all 60 s, cv 0 over 5)
        // = 0.60 -> REVIEW; #11-#12 + velocity (11 > 10 in 24 h) = 0.90 -> REJECT.
        let scoring = Scoring::default();
        let mut h = History::default();
        let mut got = Vec::new();
        for i in 1..=12 {
            let v = h.signup(
                &scoring,
                &format!("anna-{i}"),
                &format!("anna.smith{i}@example.com"),
                "203.0.113.7",
                at(i),
            );
            got.push((v.score, v.action));
            if i == 12 {
                assert_eq!(
                    fired(&v),
                    vec!["velocity", "similarity", "ip_cluster", "timing_regularity"]
                );
                assert_eq!(v.level, Level::High);
            }
        }
        let want: Vec<(f64, Action)> = [
            (0.0, Action::Approve),
            (0.25, Action::Approve),
            (0.25, Action::Approve),
            (0.25, Action::Approve),
            (0.6, Action::Review),
            (0.6, Action::Review),
            (0.6, Action::Review),
            (0.6, Action::Review),
            (0.6, Action::Review),
            (0.6, Action::Review),
            (0.9, Action::Reject),
            (0.9, Action::Reject),
        ]
        .to_vec();
        assert_eq!(got, want);
    }

    #[test]
    fn every_answer_lists_every_signal() {
        let scoring = Scoring::default();
        let mut h = History::default();
        let v = h.signup(&scoring, "u1", "sam@example.com", "203.0.113.9", at(0));
        let names: Vec<_> = v.signals.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            vec![
                "velocity",
                "similarity",
                "ip_cluster",
                "timing_regularity",
                "conversion_speed",
                "disposable_email",
                "fraud_ring"
            ]
        );
        assert_eq!((v.score, v.level, v.action), (0.0, Level::Low, Action::Approve));
        assert!(v.rules.is_empty());
    }

    #[test]
    fn thresholds_are_strictly_above() {
        let s = Scoring::default();
        let sig = |w: f64| Signal {
            name: "x",
            value: 1.0,
            threshold: 1.0,
            weight: w,
            triggered: true,
            detail: String::new(),
        };
        // 0.25 + 0.15 is exactly 0.4: not above 0.4.
        assert_eq!(
            s.decide(vec![sig(0.25), sig(0.15)], vec![]).action,
            Action::Approve
        );
        assert_eq!(s.decide(vec![sig(0.25), sig(0.2)], vec![]).action, Action::Review);
        assert_eq!(
            s.decide(vec![sig(0.3), sig(0.25), sig(0.15)], vec![]).action,
            Action::Review
        );
        assert_eq!(
            s.decide(vec![sig(0.3), sig(0.25), sig(0.2)], vec![]).action,
            Action::Reject
        );
        // The sum is capped at 1.
        let all = s.decide(vec![sig(0.5), sig(0.5), sig(0.5)], vec![]);
        assert_eq!((all.score, all.level), (1.0, Level::High));
        // A hard rule rejects a zero score.
        let rule = RuleHit {
            name: "self_referral",
            detail: String::new(),
        };
        let v = s.decide(vec![], vec![rule]);
        assert_eq!((v.score, v.level, v.action), (0.0, Level::High, Action::Reject));
    }

    #[test]
    fn a_fast_conversion_shows_the_speed_signal() {
        let s = Scoring::default();
        let mut e = Evidence::new(SubjectKind::Conversion, at(2));
        e.referrer_id = "ref".into();
        e.referee_id = "u".into();
        e.email = identity::EmailTraits::of("sam@example.com");
        e.click_at = Some(at(0));
        let v = s.evaluate(&e);
        assert_eq!(fired(&v), vec!["conversion_speed"]);
        assert_eq!((v.score, v.action), (0.1, Action::Approve));
    }

    /// docs/api.md: a conversion within 5 minutes of its click raises the fraud score
    /// ([`CONVERSION_SPEED_MIN`]); at 5 minutes it no longer does.
    #[test]
    fn a_conversion_within_five_minutes_of_its_click_raises_the_score() {
        let s = Scoring::default();
        let speed_fired = |after_click: Duration| {
            let mut e = Evidence::new(SubjectKind::Conversion, at(0) + after_click);
            e.referrer_id = "ref".into();
            e.referee_id = "u".into();
            e.click_at = Some(at(0));
            let v = s.evaluate(&e);
            let speed = v.signals.iter().find(|x| x.name == signals::CONVERSION_SPEED);
            speed
                .expect("the conversion-speed signal is always listed")
                .triggered
        };
        assert!(speed_fired(Duration::minutes(5) - Duration::seconds(1)));
        assert!(!speed_fired(Duration::minutes(5)));
    }

    #[test]
    fn disposable_referee_and_ring_add_up() {
        let s = Scoring::default();
        let mut e = Evidence::new(SubjectKind::Signup, at(0));
        e.referrer_id = "ref".into();
        e.referee_id = "u".into();
        e.email = identity::EmailTraits::of("x@mailinator.com");
        e.cluster = Some(ClusterSize {
            id: "c1".into(),
            size: 11,
        });
        let v = s.evaluate(&e);
        assert_eq!(fired(&v), vec!["disposable_email", "fraud_ring"]);
        assert_eq!((v.score, v.action), (0.45, Action::Review));
    }

    #[test]
    fn self_referral_rejects_a_signup() {
        let s = Scoring::default();
        let mut e = Evidence::new(SubjectKind::Signup, at(0));
        e.referrer_id = "couple-1".into();
        e.referee_id = "couple-1".into();
        let v = s.evaluate(&e);
        assert_eq!(v.action, Action::Reject);
        assert_eq!(v.rules[0].name, rules::SELF_REFERRAL);
    }

    #[test]
    fn invitations_get_hard_rules_and_hygiene_only() {
        let s = Scoring::default();
        // 150 invitations from one supplier's own device: velocity never applies.
        let mut e = Evidence::new(SubjectKind::Invitation, at(0));
        e.referrer_id = "photographer".into();
        e.email = identity::EmailTraits::of("client150@example.com");
        e.recipient_known = true;
        e.recipient_referrers = Count::exact(1);
        e.device_key = "laptop".into();
        e.device_invitations = Count::exact(150);
        e.device_referrers = Count::exact(1);
        let v = s.evaluate(&e);
        assert_eq!((v.score, v.action), (0.0, Action::Approve));
        assert!(v.signals.iter().all(|s| s.weight == 0.0 && !s.triggered));
        assert!(
            v.signals[1].detail.contains("their own import"),
            "{}",
            v.signals[1].detail
        );
        // The same flood acting for several accounts is refused.
        e.device_referrers = Count::exact(3);
        let v = s.evaluate(&e);
        assert_eq!(v.action, Action::Reject);
        assert_eq!(v.rules[0].name, rules::DEVICE_INVITATION_FLOOD);
        // A disposable recipient and a recipient invited by a fourth referrer.
        let mut e = Evidence::new(SubjectKind::Invitation, at(0));
        e.referrer_id = "r4".into();
        e.email = identity::EmailTraits::of("x@mailinator.com");
        e.recipient_known = true;
        e.recipient_referrers = Count::exact(4);
        let v = s.evaluate(&e);
        let names: Vec<_> = v.rules.iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            vec![rules::RECIPIENT_INVITED_BY_MANY, rules::DISPOSABLE_RECIPIENT]
        );
        assert_eq!((v.level, v.action), (Level::High, Action::Reject));
    }

    #[test]
    fn invitation_to_the_referrers_own_address() {
        let s = Scoring::default();
        let mut e = Evidence::new(SubjectKind::Invitation, at(0));
        e.referrer_id = "r".into();
        e.email = identity::EmailTraits::of("me@example.com");
        e.referrer_match.same_email = true;
        let v = s.evaluate(&e);
        assert_eq!(v.rules[0].name, rules::SELF_REFERRAL);
    }

    #[test]
    fn counts_show_their_cap() {
        assert_eq!(Count::of(1000, 1000).shown(), "1000+");
        assert_eq!(Count::of(7, 1000).shown(), "7");
        assert_eq!(count_cap(100), 1000);
        assert_eq!(count_cap(5000), 5001);
    }
}
