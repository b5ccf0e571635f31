//! The weighted risk signals, one named function each, over plain data. Each answers with
//! its value, threshold, weight, whether it fired and why, fired or not.
//!
//! Similarity is the normalised Levenshtein similarity of `strsim` (1 − edit distance ÷
//! the longer length): "anna.smith1" vs "anna.smith2" is 1 − 1/11 = 0.909. It is chosen over
//! Jaro-Winkler because it is symmetric in what it forgives (an edit anywhere costs the
//! same) and reads plainly as "the share of characters that match", so 0.8 means "at most
//! one character in five differs"; Jaro-Winkler's prefix bonus rates unrelated people with
//! a common first name ("sarah.jones" / "sarah.james" / "sarah.johnson") too close.

use chrono::{DateTime, Duration, Utc};

use super::{Count, Peer, Signal, identity};

pub const VELOCITY: &str = "velocity";
pub const SIMILARITY: &str = "similarity";
pub const IP_CLUSTER: &str = "ip_cluster";
pub const TIMING_REGULARITY: &str = "timing_regularity";
pub const CONVERSION_SPEED: &str = "conversion_speed";
pub const DISPOSABLE_EMAIL: &str = "disposable_email";
pub const FRAUD_RING: &str = "fraud_ring";
/// Invitation hygiene (weight 0: explained, never scored).
pub const RECIPIENT_REFERRERS: &str = "recipient_referrers";
pub const DEVICE_INVITATIONS: &str = "device_invitations";

/// Velocity: more than `limit` signups referred by the referrer in the last 24 h (the one
/// being assessed included).
pub fn velocity(signups_24h: Count, limit: u32, weight: f64) -> Signal {
    let triggered = signups_24h.n > limit;
    Signal {
        name: VELOCITY,
        value: f64::from(signups_24h.n),
        threshold: f64::from(limit),
        weight,
        triggered,
        detail: format!(
            "{} signups referred by this referrer in the last 24 h; more than {limit} fires",
            signups_24h.shown()
        ),
    }
}

/// The similarity of two strings in 0..=1 (normalised Levenshtein); empty strings are
/// similar to nothing.
pub fn string_similarity(a: &str, b: &str) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    strsim::normalized_levenshtein(a, b)
}

/// Similarity: the referee's e-mail local part or name is more than `threshold` similar to
/// another referee's of the same referrer in the last 7 days. `peers` are the referrer's
/// recent referees (the referee itself is skipped by id).
pub fn similarity(
    referee_id: &str,
    email_local: &str,
    name: &str,
    peers: &[Peer],
    threshold: f64,
    weight: f64,
) -> Signal {
    let mut best = 0.0_f64;
    let mut why = String::new();
    for peer in peers.iter().filter(|p| p.referee_id != referee_id) {
        let by_email = string_similarity(email_local, &peer.email_local);
        let by_name = string_similarity(name, &peer.name);
        let (score, what, mine, theirs) = if by_email >= by_name {
            (
                by_email,
                "e-mail local part",
                email_local,
                peer.email_local.as_str(),
            )
        } else {
            (by_name, "name", name, peer.name.as_str())
        };
        if score > best {
            best = score;
            why = format!(
                "{what} {mine:?} is {score:.2} similar to {theirs:?} (referee {})",
                peer.referee_id
            );
        }
    }
    let compared = peers.iter().filter(|p| p.referee_id != referee_id).count();
    let detail = if email_local.is_empty() && name.is_empty() {
        "no e-mail or name to compare".to_string()
    } else if compared == 0 {
        "no other referee of this referrer in the last 7 days".to_string()
    } else {
        format!("{why}; compared with {compared} other referees of this referrer in the last 7 days")
    };
    Signal {
        name: SIMILARITY,
        value: round(best),
        threshold,
        weight,
        triggered: best > threshold,
        detail,
    }
}

/// IP clustering: at least `min` of the referrer's referees came from this IP in 7 days
/// (this one included).
pub fn ip_cluster(ip: &str, same_ip_referees: Count, min: u32, weight: f64) -> Signal {
    if ip.trim().is_empty() {
        return Signal {
            name: IP_CLUSTER,
            value: 0.0,
            threshold: f64::from(min),
            weight,
            triggered: false,
            detail: "no IP address known".into(),
        };
    }
    Signal {
        name: IP_CLUSTER,
        value: f64::from(same_ip_referees.n),
        threshold: f64::from(min),
        weight,
        triggered: same_ip_referees.n >= min,
        detail: format!(
            // Never the IP itself: the explanation is stored (invite-svc's risk) and shown.
            "{} of this referrer's referees came from the same IP in the last 7 days; {min} or more fires",
            same_ip_referees.shown()
        ),
    }
}

/// The coefficient of variation (standard deviation ÷ mean, population form) of the gaps
/// between consecutive instants, in time order. `None` with fewer than two gaps. Gaps that
/// are all zero (a burst in one instant) are perfectly regular: 0.
pub fn inter_arrival_cv(times: &[DateTime<Utc>]) -> Option<f64> {
    let mut sorted = times.to_vec();
    sorted.sort();
    let gaps: Vec<f64> = sorted
        .windows(2)
        .map(|w| (w[1] - w[0]).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6)
        .collect();
    if gaps.len() < 2 {
        return None;
    }
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return Some(0.0);
    }
    let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
    Some(variance.sqrt() / mean)
}

/// Timing regularity: the referrer's signups arrive too regularly to be people — the
/// coefficient of variation of their inter-arrival times is below `max_cv` over at least
/// `min_events` signups (the most recent ones in 7 days, this one included).
pub fn timing_regularity(times: &[DateTime<Utc>], max_cv: f64, min_events: usize, weight: f64) -> Signal {
    let events = times.len();
    let cv = inter_arrival_cv(times);
    let (value, triggered, detail) = match cv {
        Some(cv) if events >= min_events => (
            round(cv),
            cv < max_cv,
            format!(
                "inter-arrival times of this referrer's last {events} signups vary by {cv:.3} (coefficient of variation); below {max_cv} fires"
            ),
        ),
        Some(cv) => (
            round(cv),
            false,
            format!("only {events} signups from this referrer in the last 7 days; needs {min_events}"),
        ),
        None => (
            0.0,
            false,
            format!("only {events} signups from this referrer in the last 7 days; needs {min_events}"),
        ),
    };
    Signal {
        name: TIMING_REGULARITY,
        value,
        threshold: max_cv,
        weight,
        triggered,
        detail,
    }
}

/// Conversion speed: less than `min` from the attributed click to the conversion (value and
/// threshold in seconds). Signups have no conversion: the signal is listed, never fired.
pub fn conversion_speed(
    click_at: Option<DateTime<Utc>>,
    converted_at: Option<DateTime<Utc>>,
    min: Duration,
    weight: f64,
) -> Signal {
    let threshold = min.num_seconds() as f64;
    let (value, triggered, detail) = match (click_at, converted_at) {
        (_, None) => (0.0, false, "applies to conversions only".to_string()),
        (None, Some(_)) => (0.0, false, "no attributed click to measure from".to_string()),
        (Some(click), Some(conv)) => {
            let secs = (conv - click).num_milliseconds() as f64 / 1000.0;
            let fired = secs >= 0.0 && secs < threshold;
            (
                round(secs),
                fired,
                format!(
                    "converted {} after the click; under {} fires",
                    human(conv - click),
                    human(min)
                ),
            )
        }
    };
    Signal {
        name: CONVERSION_SPEED,
        value,
        threshold,
        weight,
        triggered,
        detail,
    }
}

/// Disposable e-mail: the referee's address is at a domain on the maintained list.
pub fn disposable_email(email_normalized: &str, weight: f64) -> Signal {
    let hit = identity::disposable_domain(email_normalized);
    let detail = match (email_normalized.is_empty(), hit) {
        (true, _) => "no e-mail address to check".to_string(),
        (false, Some(domain)) => format!("{domain} is a disposable e-mail domain"),
        (false, None) => format!(
            "{} is not on the disposable-domain list",
            identity::email_domain(email_normalized)
        ),
    };
    Signal {
        name: DISPOSABLE_EMAIL,
        value: if hit.is_some() { 1.0 } else { 0.0 },
        threshold: 1.0,
        weight,
        triggered: hit.is_some(),
        detail,
    }
}

/// Fraud ring: the party belongs to a cluster (people linked by a shared IP, device or
/// e-mail) larger than `limit`.
pub fn fraud_ring(cluster: Option<(&str, u32)>, limit: u32, weight: f64) -> Signal {
    let (value, triggered, detail) = match cluster {
        None => (
            0.0,
            false,
            "not linked to anyone by IP, device or e-mail".to_string(),
        ),
        Some((id, size)) => (
            f64::from(size),
            size > limit,
            format!(
                "member of cluster {id} of {size} people linked by a shared IP, device or e-mail; more than {limit} fires"
            ),
        ),
    };
    Signal {
        name: FRAUD_RING,
        value,
        threshold: f64::from(limit),
        weight,
        triggered,
        detail,
    }
}

/// Hygiene (invitations, weight 0): how many different referrers invited this recipient.
pub fn recipient_referrers(known: bool, referrers: Count, limit: u32) -> Signal {
    Signal {
        name: RECIPIENT_REFERRERS,
        value: f64::from(referrers.n),
        threshold: f64::from(limit),
        weight: 0.0,
        triggered: referrers.n > limit,
        detail: if known {
            format!(
                "invited by {} different referrers in the last 30 days; more than {limit} is refused",
                referrers.shown()
            )
        } else {
            "no recipient address or key".into()
        },
    }
}

/// Hygiene (invitations, weight 0): invitations made from this device in 24 h. With
/// `single_referrer_exempt`, a device acting for one referrer only does not fire (see
/// [`super::rules::device_invitation_flood`]).
pub fn device_invitations(
    known: bool,
    invitations: Count,
    referrers: Count,
    limit: u32,
    single_referrer_exempt: bool,
) -> Signal {
    let exempt = single_referrer_exempt && referrers.n <= 1;
    let detail = if !known {
        "no device id".to_string()
    } else if exempt && invitations.n > limit {
        format!(
            "{} invitations from this device in the last 24 h, all for one referrer: their own import, paced by the quotas",
            invitations.shown()
        )
    } else {
        format!(
            "{} invitations from this device in the last 24 h for {} referrer(s); more than {limit} is a flood",
            invitations.shown(),
            referrers.shown()
        )
    };
    Signal {
        name: DEVICE_INVITATIONS,
        value: f64::from(invitations.n),
        threshold: f64::from(limit),
        weight: 0.0,
        triggered: known && invitations.n > limit && !exempt,
        detail,
    }
}

/// Six decimals: enough to explain, stable to compare.
pub fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn human(d: Duration) -> String {
    let secs = d.num_seconds();
    if secs.abs() < 120 {
        format!("{secs} s")
    } else if secs.abs() < 7200 {
        format!("{} min", secs / 60)
    } else {
        format!("{} h", secs / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn peer(id: &str, local: &str, name: &str) -> Peer {
        Peer {
            referee_id: id.into(),
            email_local: local.into(),
            name: name.into(),
            occurred_at: at(0),
        }
    }

    #[test]
    fn velocity_fires_above_the_limit() {
        let s = velocity(Count::exact(10), 10, 0.3);
        assert!(!s.triggered);
        assert_eq!(s.value, 10.0);
        let s = velocity(Count::exact(11), 10, 0.3);
        assert!(s.triggered);
        assert_eq!((s.threshold, s.weight), (10.0, 0.3));
    }

    #[test]
    fn similarity_is_normalised_levenshtein() {
        // One edit in eleven characters.
        let sim = string_similarity("anna.smith1", "anna.smith2");
        assert!((sim - (1.0 - 1.0 / 11.0)).abs() < 1e-12);
        assert_eq!(string_similarity("", "x"), 0.0);
        let peers = [peer("u1", "anna.smith1", "")];
        let s = similarity("u2", "anna.smith2", "", &peers, 0.8, 0.25);
        assert!(s.triggered);
        assert_eq!(s.value, 0.909091);
        assert!(s.detail.contains("anna.smith1"), "{}", s.detail);
        // Unrelated people are far apart: "sam.jones" vs "olivia.brown".
        let s = similarity(
            "u2",
            "olivia.brown",
            "Olivia Brown",
            &[peer("u1", "sam.jones", "sam jones")],
            0.8,
            0.25,
        );
        assert!(!s.triggered, "{}", s.value);
        // The referee is never compared with itself.
        let s = similarity("u1", "anna.smith1", "", &peers, 0.8, 0.25);
        assert!(!s.triggered);
        assert_eq!(s.value, 0.0);
    }

    #[test]
    fn similarity_also_compares_names() {
        let peers = [peer("u1", "zz91", "anna smith")];
        let s = similarity("u2", "qq17", "anna smith", &peers, 0.8, 0.25);
        assert!(s.triggered);
        assert_eq!(s.value, 1.0);
        assert!(s.detail.starts_with("name"), "{}", s.detail);
    }

    #[test]
    fn ip_cluster_fires_at_five() {
        assert!(!ip_cluster("203.0.113.7", Count::exact(4), 5, 0.2).triggered);
        assert!(ip_cluster("203.0.113.7", Count::exact(5), 5, 0.2).triggered);
        assert!(!ip_cluster("", Count::exact(9), 5, 0.2).triggered);
    }

    #[test]
    fn coefficient_of_variation_by_hand() {
        // Gaps 60, 60, 60, 60: no variation.
        let even: Vec<_> = (0..5).map(at).collect();
        assert_eq!(inter_arrival_cv(&even), Some(0.0));
        // Gaps 60, 120, 60, 120 s: mean 90, population sd 30, cv 1/3.
        let uneven = [at(0), at(1), at(3), at(4), at(6)];
        let cv = inter_arrival_cv(&uneven).unwrap();
        assert!((cv - 1.0 / 3.0).abs() < 1e-12);
        // Order does not matter; one gap is not enough.
        let shuffled = [at(4), at(0), at(6), at(1), at(3)];
        assert!((inter_arrival_cv(&shuffled).unwrap() - cv).abs() < 1e-12);
        assert_eq!(inter_arrival_cv(&[at(0), at(1)]), None);
        // All at one instant: a burst is perfectly regular.
        assert_eq!(inter_arrival_cv(&[at(0), at(0), at(0)]), Some(0.0));
    }

    #[test]
    fn timing_needs_enough_events() {
        let four: Vec<_> = (0..4).map(at).collect();
        let s = timing_regularity(&four, 0.1, 5, 0.15);
        assert!(!s.triggered);
        assert!(s.detail.contains("needs 5"), "{}", s.detail);
        let five: Vec<_> = (0..5).map(at).collect();
        assert!(timing_regularity(&five, 0.1, 5, 0.15).triggered);
        let uneven = [at(0), at(1), at(3), at(4), at(6)];
        assert!(!timing_regularity(&uneven, 0.1, 5, 0.15).triggered);
    }

    #[test]
    fn conversion_speed_under_five_minutes() {
        let min = Duration::minutes(5);
        let s = conversion_speed(Some(at(0)), Some(at(2)), min, 0.1);
        assert!(s.triggered);
        assert_eq!((s.value, s.threshold), (120.0, 300.0));
        assert!(!conversion_speed(Some(at(0)), Some(at(5)), min, 0.1).triggered);
        assert!(!conversion_speed(None, Some(at(1)), min, 0.1).triggered);
        let signup = conversion_speed(None, None, min, 0.1);
        assert!(!signup.triggered);
        assert_eq!(signup.detail, "applies to conversions only");
    }

    #[test]
    fn disposable_and_ring() {
        assert!(disposable_email("x@mailinator.com", 0.25).triggered);
        assert!(!disposable_email("x@example.com", 0.25).triggered);
        assert!(!disposable_email("", 0.25).triggered);
        assert!(!fraud_ring(Some(("c1", 10)), 10, 0.2).triggered);
        assert!(fraud_ring(Some(("c1", 11)), 10, 0.2).triggered);
        assert!(!fraud_ring(None, 10, 0.2).triggered);
    }
}
