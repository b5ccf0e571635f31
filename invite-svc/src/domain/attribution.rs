//! Which referrer, if any, gets the credit for a signup.
//!
//! The glue gathers the candidate touches (the invitation or code the signup named, the
//! click behind the attribution cookie, an open invitation to the signup's email); this
//! module decides between them. A user is attributed once: the glue returns a stored
//! decision for a repeated signup instead of resolving again.

use chrono::{DateTime, TimeDelta, Utc};

/// How long after a touch a signup still counts, and how long an invitation stays open
/// after it is sent.
pub const ATTRIBUTION_WINDOW_DAYS: i64 = 30;

/// How many of a visitor's clicks before the newest one a signup counts (the chain the
/// redirect's cookie links, or sdk.js's `clickIds()`).
pub const MAX_EARLIER_CLICKS: usize = 10;

api_enum! {
    /// How a touch reached the person who signed up.
    pub enum TouchKind ("touch kind") {
        /// The signup named an invitation id.
        Invitation => "INVITATION",
        /// The signup named a referral code.
        Code => "CODE",
        /// The attribution cookie carried a click id.
        Click => "CLICK",
        /// An open invitation was addressed to the signup's email.
        Email => "EMAIL",
    }
}

/// One thing that may have brought a person to sign up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    pub kind: TouchKind,
    /// The invitation id (for INVITATION and EMAIL touches), the code (CODE) or the click id
    /// (CLICK).
    pub id: String,
    pub referrer_id: String,
    pub invitation_id: Option<String>,
    pub code: Option<String>,
    /// When the touch happened: an invitation's send time, a click's time; for a code typed
    /// at signup, the signup time (codes do not age, the person has it now).
    pub at: DateTime<Utc>,
}

impl Touch {
    /// What makes two touches the same: every touch that leads to one invitation (named,
    /// found by email, or through the invitation's own code) is that invitation; a click is
    /// an event of its own even when it came through an invitation's link.
    fn identity(&self) -> (TouchKind, &str) {
        match (self.kind, &self.invitation_id) {
            (TouchKind::Click, _) | (_, None) => (self.kind, &self.id),
            (_, Some(invitation_id)) => (TouchKind::Invitation, invitation_id),
        }
    }
}

/// The signup being attributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupFacts {
    pub user_id: String,
    /// The signup's email, normalised with [`normalize_email`](super::contact::normalize_email).
    pub email_normalized: Option<String>,
    pub at: DateTime<Utc>,
}

/// The touches found for a signup, one slot per source, in the order they take precedence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    /// The invitation the signup named (`invitationId`).
    pub invitation: Option<Touch>,
    /// The referral code the signup named (`code`).
    pub code: Option<Touch>,
    /// The visitor's newest valid click (`clickId`, the cookie, or the newest of `clickIds`).
    pub click: Option<Touch>,
    /// The same visitor's earlier valid clicks, at most [`MAX_EARLIER_CLICKS`]: they share
    /// multi-touch credit but never win over the newest click.
    pub earlier_clicks: Vec<Touch>,
    /// The most recent open invitation addressed to the signup's email.
    pub email: Option<Touch>,
}

impl Candidates {
    /// Explicit (invitation, then code) before click before email: what the person told us
    /// beats what their browser remembers, which beats a guess from their address.
    pub fn in_precedence_order(&self) -> impl Iterator<Item = &Touch> {
        [&self.invitation, &self.code, &self.click]
            .into_iter()
            .flatten()
            .chain(&self.earlier_clicks)
            .chain(&self.email)
    }
}

/// A visitor's valid clicks split into the newest (the click touch) and the earlier ones;
/// at equal instants the first given (the id the signup named) counts as the newest.
pub fn newest_click(mut clicks: Vec<Touch>) -> (Option<Touch>, Vec<Touch>) {
    let newest = clicks
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| a.at.cmp(&b.at).then(j.cmp(i)))
        .map(|(i, _)| i);
    let Some(i) = newest else {
        return (None, clicks);
    };
    let newest = clicks.remove(i);
    clicks.truncate(MAX_EARLIER_CLICKS);
    (Some(newest), clicks)
}

api_enum! {
    /// Why a signup credits nobody.
    pub enum NotAttributedReason ("not-attributed reason") {
        /// No invitation, code, click or email match at all.
        NoTouch => "NO_TOUCH",
        /// Touches exist, but none in the window before the signup.
        OutsideWindow => "OUTSIDE_WINDOW",
        /// The touch that would win belongs to the person signing up.
        SelfReferral => "SELF_REFERRAL",
    }
}

/// The outcome of attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Attributed {
        winner: Touch,
        touchpoints: Vec<Touch>,
    },
    NotAttributed {
        reason: NotAttributedReason,
        touchpoints: Vec<Touch>,
    },
}

impl Decision {
    /// The touch credited, if any.
    pub fn winner(&self) -> Option<&Touch> {
        match self {
            Self::Attributed { winner, .. } => Some(winner),
            Self::NotAttributed { .. } => None,
        }
    }

    /// Every distinct touch that counts (inside the window, not the user's own), oldest
    /// first; multi-touch attribution models share the credit among these.
    pub fn touchpoints(&self) -> &[Touch] {
        match self {
            Self::Attributed { touchpoints, .. } | Self::NotAttributed { touchpoints, .. } => touchpoints,
        }
    }
}

/// Attributes a signup with the standard [`ATTRIBUTION_WINDOW_DAYS`].
pub fn resolve(
    signup: &SignupFacts,
    candidates: &Candidates,
    referrer_email_of: impl Fn(&str) -> Option<String>,
) -> Decision {
    resolve_with_window(signup, candidates, referrer_email_of, ATTRIBUTION_WINDOW_DAYS)
}

/// Attributes a signup: the first touch in precedence order that lies inside the window
/// wins (a stale touch gives way to the next source). If that winner is the person's own —
/// they are its referrer, or their email is the referrer's email as given by
/// `referrer_email_of(referrer_id)` (normalised) — nobody is credited: the person tried to
/// refer themselves, and a lower-precedence touch is not promoted in its place.
pub fn resolve_with_window(
    signup: &SignupFacts,
    candidates: &Candidates,
    referrer_email_of: impl Fn(&str) -> Option<String>,
    window_days: i64,
) -> Decision {
    let is_self_referral = |touch: &Touch| {
        touch.referrer_id == signup.user_id
            || signup
                .email_normalized
                .as_deref()
                .is_some_and(|email| referrer_email_of(&touch.referrer_id).as_deref() == Some(email))
    };
    let mut found = candidates.in_precedence_order().peekable();
    if found.peek().is_none() {
        return Decision::NotAttributed {
            reason: NotAttributedReason::NoTouch,
            touchpoints: Vec::new(),
        };
    }
    let in_window: Vec<&Touch> = found
        .filter(|touch| within_attribution_window(touch.at, signup.at, window_days))
        .collect();
    let touchpoints = distinct_by_time(in_window.iter().copied().filter(|t| !is_self_referral(t)));
    match in_window.first() {
        None => Decision::NotAttributed {
            reason: NotAttributedReason::OutsideWindow,
            touchpoints,
        },
        Some(winner) if is_self_referral(winner) => Decision::NotAttributed {
            reason: NotAttributedReason::SelfReferral,
            touchpoints,
        },
        Some(winner) => Decision::Attributed {
            winner: (*winner).clone(),
            touchpoints,
        },
    }
}

/// Whether a touch at `touch_at` counts for a signup at `signup_at`: not after it, and at
/// most `window_days` before it (inclusive, so an invitation counts up to and including
/// its [`invitation_expires_at`] instant).
pub fn within_attribution_window(
    touch_at: DateTime<Utc>,
    signup_at: DateTime<Utc>,
    window_days: i64,
) -> bool {
    touch_at <= signup_at && signup_at - touch_at <= window(window_days)
}

/// When an invitation sent at `sent_at` expires: the end of its attribution window.
pub fn invitation_expires_at(sent_at: DateTime<Utc>, window_days: i64) -> DateTime<Utc> {
    sent_at
        .checked_add_signed(window(window_days))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn window(days: i64) -> TimeDelta {
    TimeDelta::try_days(days).unwrap_or(TimeDelta::MAX)
}

/// The touches without repeats (the first of equal ones kept), oldest first; touches at the
/// same instant keep their precedence order.
fn distinct_by_time<'a>(touches: impl Iterator<Item = &'a Touch>) -> Vec<Touch> {
    let mut distinct: Vec<Touch> = Vec::new();
    for touch in touches {
        if !distinct.iter().any(|kept| kept.identity() == touch.identity()) {
            distinct.push(touch.clone());
        }
    }
    distinct.sort_by_key(|touch| touch.at);
    distinct
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNUP_AT: &str = "2024-06-30T12:00:00Z";

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn days_before_signup(days: i64) -> DateTime<Utc> {
        utc(SIGNUP_AT) - TimeDelta::days(days)
    }

    fn touch(kind: TouchKind, id: &str, referrer: &str, at: DateTime<Utc>) -> Touch {
        let invitation_id = matches!(kind, TouchKind::Invitation | TouchKind::Email).then(|| id.to_owned());
        let code = (kind == TouchKind::Code).then(|| id.to_owned());
        Touch {
            kind,
            id: id.into(),
            referrer_id: referrer.into(),
            invitation_id,
            code,
            at,
        }
    }

    fn signup(user: &str, email: Option<&str>) -> SignupFacts {
        SignupFacts {
            user_id: user.into(),
            email_normalized: email.map(Into::into),
            at: utc(SIGNUP_AT),
        }
    }

    fn no_emails(_: &str) -> Option<String> {
        None
    }

    fn ids(touches: &[Touch]) -> Vec<&str> {
        touches.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn nothing_found_is_no_touch() {
        let decision = resolve(&signup("u1", None), &Candidates::default(), no_emails);
        assert_eq!(
            decision,
            Decision::NotAttributed {
                reason: NotAttributedReason::NoTouch,
                touchpoints: vec![]
            }
        );
        assert_eq!(decision.winner(), None);
    }

    #[test]
    fn precedence_is_invitation_code_click_email() {
        let inv = touch(TouchKind::Invitation, "inv-1", "r1", days_before_signup(10));
        let code = touch(TouchKind::Code, "LOVE-ABCDEF", "r2", utc(SIGNUP_AT));
        let click = touch(TouchKind::Click, "clk-1", "r3", days_before_signup(2));
        let email = touch(TouchKind::Email, "inv-9", "r4", days_before_signup(20));
        let mut candidates = Candidates {
            invitation: Some(inv.clone()),
            code: Some(code.clone()),
            click: Some(click.clone()),
            earlier_clicks: Vec::new(),
            email: Some(email.clone()),
        };
        let user = signup("u1", Some("anna@example.com"));

        let decision = resolve(&user, &candidates, no_emails);
        assert_eq!(decision.winner(), Some(&inv));
        assert_eq!(
            ids(decision.touchpoints()),
            ["inv-9", "inv-1", "clk-1", "LOVE-ABCDEF"]
        );

        candidates.invitation = None;
        assert_eq!(resolve(&user, &candidates, no_emails).winner(), Some(&code));
        candidates.code = None;
        assert_eq!(resolve(&user, &candidates, no_emails).winner(), Some(&click));
        candidates.click = None;
        assert_eq!(resolve(&user, &candidates, no_emails).winner(), Some(&email));
    }

    #[test]
    fn a_stale_touch_gives_way_to_the_next_source() {
        let candidates = Candidates {
            invitation: Some(touch(
                TouchKind::Invitation,
                "inv-old",
                "r1",
                days_before_signup(31),
            )),
            click: Some(touch(TouchKind::Click, "clk-1", "r2", days_before_signup(1))),
            ..Candidates::default()
        };
        let decision = resolve(&signup("u1", None), &candidates, no_emails);
        assert_eq!(decision.winner().map(|t| t.id.as_str()), Some("clk-1"));
        assert_eq!(ids(decision.touchpoints()), ["clk-1"]);
    }

    #[test]
    fn the_window_is_thirty_days_inclusive() {
        let at_edge = utc(SIGNUP_AT) - TimeDelta::days(30);
        let past_edge = at_edge - TimeDelta::seconds(1);
        assert!(within_attribution_window(
            at_edge,
            utc(SIGNUP_AT),
            ATTRIBUTION_WINDOW_DAYS
        ));
        assert!(!within_attribution_window(
            past_edge,
            utc(SIGNUP_AT),
            ATTRIBUTION_WINDOW_DAYS
        ));
        assert!(within_attribution_window(
            utc(SIGNUP_AT),
            utc(SIGNUP_AT),
            ATTRIBUTION_WINDOW_DAYS
        ));

        let candidates = Candidates {
            click: Some(touch(TouchKind::Click, "clk", "r1", past_edge)),
            ..Candidates::default()
        };
        assert_eq!(
            resolve(&signup("u1", None), &candidates, no_emails),
            Decision::NotAttributed {
                reason: NotAttributedReason::OutsideWindow,
                touchpoints: vec![]
            }
        );
    }

    #[test]
    fn a_touch_after_the_signup_does_not_count() {
        let later = utc(SIGNUP_AT) + TimeDelta::seconds(1);
        assert!(!within_attribution_window(
            later,
            utc(SIGNUP_AT),
            ATTRIBUTION_WINDOW_DAYS
        ));
        let candidates = Candidates {
            click: Some(touch(TouchKind::Click, "clk", "r1", later)),
            ..Candidates::default()
        };
        let decision = resolve(&signup("u1", None), &candidates, no_emails);
        assert_eq!(
            decision,
            Decision::NotAttributed {
                reason: NotAttributedReason::OutsideWindow,
                touchpoints: vec![]
            }
        );
    }

    #[test]
    fn referring_yourself_by_user_id_is_not_attributed_and_does_not_fall_through() {
        let candidates = Candidates {
            code: Some(touch(TouchKind::Code, "LOVE-ABCDEF", "u1", utc(SIGNUP_AT))),
            click: Some(touch(TouchKind::Click, "clk", "r2", days_before_signup(3))),
            ..Candidates::default()
        };
        let decision = resolve(&signup("u1", None), &candidates, no_emails);
        assert_eq!(
            decision,
            Decision::NotAttributed {
                reason: NotAttributedReason::SelfReferral,
                touchpoints: vec![touch(TouchKind::Click, "clk", "r2", days_before_signup(3))],
            }
        );
    }

    #[test]
    fn referring_yourself_by_email_is_not_attributed() {
        let candidates = Candidates {
            email: Some(touch(TouchKind::Email, "inv-1", "r1", days_before_signup(3))),
            ..Candidates::default()
        };
        let referrer_email = |id: &str| (id == "r1").then(|| "anna@example.com".to_owned());
        let decision = resolve(
            &signup("u2", Some("anna@example.com")),
            &candidates,
            referrer_email,
        );
        assert_eq!(
            decision,
            Decision::NotAttributed {
                reason: NotAttributedReason::SelfReferral,
                touchpoints: vec![]
            }
        );
        // Someone else's email is fine.
        let decision = resolve(
            &signup("u2", Some("bea@example.com")),
            &candidates,
            referrer_email,
        );
        assert_eq!(decision.winner().map(|t| t.id.as_str()), Some("inv-1"));
        // Without a signup email only the user id can reveal self-referral.
        let decision = resolve(&signup("u2", None), &candidates, referrer_email);
        assert!(decision.winner().is_some());
    }

    #[test]
    fn a_lower_ranked_self_touch_does_not_spoil_the_winner() {
        let candidates = Candidates {
            invitation: Some(touch(TouchKind::Invitation, "inv-1", "r1", days_before_signup(5))),
            click: Some(touch(TouchKind::Click, "clk", "u1", days_before_signup(1))),
            ..Candidates::default()
        };
        let decision = resolve(&signup("u1", None), &candidates, no_emails);
        assert_eq!(decision.winner().map(|t| t.id.as_str()), Some("inv-1"));
        assert_eq!(ids(decision.touchpoints()), ["inv-1"]);
    }

    #[test]
    fn self_referral_outside_the_window_is_just_outside_the_window() {
        let candidates = Candidates {
            code: Some(touch(
                TouchKind::Code,
                "LOVE-ABCDEF",
                "u1",
                days_before_signup(40),
            )),
            ..Candidates::default()
        };
        let decision = resolve(&signup("u1", None), &candidates, no_emails);
        assert!(matches!(
            decision,
            Decision::NotAttributed {
                reason: NotAttributedReason::OutsideWindow,
                ..
            }
        ));
    }

    #[test]
    fn an_invitation_found_twice_is_one_touchpoint() {
        let named = touch(TouchKind::Invitation, "inv-1", "r1", days_before_signup(4));
        let by_email = touch(TouchKind::Email, "inv-1", "r1", days_before_signup(4));
        let candidates = Candidates {
            invitation: Some(named.clone()),
            email: Some(by_email),
            ..Candidates::default()
        };
        let decision = resolve(&signup("u9", None), &candidates, no_emails);
        assert_eq!(
            decision,
            Decision::Attributed {
                winner: named.clone(),
                touchpoints: vec![named]
            }
        );
    }

    #[test]
    fn an_invitation_reached_through_its_code_and_by_email_is_one_touchpoint() {
        let mut by_code = touch(TouchKind::Code, "LOVE-ABCDEF", "r1", days_before_signup(4));
        by_code.invitation_id = Some("inv-1".into());
        let by_email = touch(TouchKind::Email, "inv-1", "r1", days_before_signup(4));
        let mut click = touch(TouchKind::Click, "clk", "r1", days_before_signup(2));
        click.invitation_id = Some("inv-1".into());
        let candidates = Candidates {
            code: Some(by_code.clone()),
            click: Some(click.clone()),
            email: Some(by_email),
            ..Candidates::default()
        };
        let decision = resolve(&signup("u9", None), &candidates, no_emails);
        assert_eq!(
            decision,
            Decision::Attributed {
                winner: by_code.clone(),
                touchpoints: vec![by_code, click]
            }
        );
    }

    #[test]
    fn simultaneous_touches_keep_precedence_order() {
        let at = days_before_signup(1);
        let candidates = Candidates {
            code: Some(touch(TouchKind::Code, "LOVE-ABCDEF", "r1", at)),
            click: Some(touch(TouchKind::Click, "clk", "r1", at)),
            ..Candidates::default()
        };
        let decision = resolve(&signup("u9", None), &candidates, no_emails);
        assert_eq!(ids(decision.touchpoints()), ["LOVE-ABCDEF", "clk"]);
    }

    #[test]
    fn a_shorter_window_can_be_configured() {
        let candidates = Candidates {
            click: Some(touch(TouchKind::Click, "clk", "r1", days_before_signup(8))),
            ..Candidates::default()
        };
        let user = signup("u9", None);
        assert!(resolve(&user, &candidates, no_emails).winner().is_some());
        assert!(
            resolve_with_window(&user, &candidates, no_emails, 7)
                .winner()
                .is_none()
        );
    }

    #[test]
    fn invitations_expire_at_the_end_of_the_window() {
        let sent = utc("2024-06-01T09:30:00Z");
        assert_eq!(
            invitation_expires_at(sent, ATTRIBUTION_WINDOW_DAYS),
            utc("2024-07-01T09:30:00Z")
        );
        assert_eq!(invitation_expires_at(sent, 7), utc("2024-06-08T09:30:00Z"));
        // A signup at the expiry instant still counts; one second later it does not.
        let expires = invitation_expires_at(sent, ATTRIBUTION_WINDOW_DAYS);
        assert!(within_attribution_window(sent, expires, ATTRIBUTION_WINDOW_DAYS));
        assert!(!within_attribution_window(
            sent,
            expires + TimeDelta::seconds(1),
            ATTRIBUTION_WINDOW_DAYS
        ));
        // Absurd settings saturate instead of panicking.
        assert_eq!(invitation_expires_at(sent, i64::MAX), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn reason_names() {
        assert_eq!(NotAttributedReason::NoTouch.as_str(), "NO_TOUCH");
        assert_eq!(NotAttributedReason::OutsideWindow.as_str(), "OUTSIDE_WINDOW");
        assert_eq!(NotAttributedReason::SelfReferral.as_str(), "SELF_REFERRAL");
        assert_eq!(TouchKind::parse("CLICK"), Ok(TouchKind::Click));
    }

    #[test]
    fn a_visitors_newest_click_wins_and_the_earlier_ones_share_the_touchpoints() {
        let first = touch(TouchKind::Click, "clk-a", "r1", days_before_signup(2));
        let second = touch(TouchKind::Click, "clk-b", "r2", days_before_signup(1));
        let stale = touch(TouchKind::Click, "clk-old", "r3", days_before_signup(40));
        // The signup named the second click; the chain found the first and a stale one.
        let (click, earlier) = newest_click(vec![second.clone(), first.clone(), stale.clone()]);
        assert_eq!(click.as_ref(), Some(&second));
        assert_eq!(ids(&earlier), ["clk-a", "clk-old"]);
        let candidates = Candidates {
            click,
            earlier_clicks: earlier,
            ..Candidates::default()
        };
        let decision = resolve(&signup("u1", None), &candidates, no_emails);
        assert_eq!(decision.winner(), Some(&second));
        assert_eq!(ids(decision.touchpoints()), ["clk-a", "clk-b"]);

        // A tie goes to the id the signup named (given first).
        let twin = touch(TouchKind::Click, "clk-twin", "r4", days_before_signup(1));
        let (click, earlier) = newest_click(vec![twin.clone(), second.clone()]);
        assert_eq!(click, Some(twin));
        assert_eq!(ids(&earlier), ["clk-b"]);
        assert_eq!(newest_click(Vec::new()), (None, Vec::new()));
    }

    #[test]
    fn at_most_ten_earlier_clicks_count() {
        let clicks: Vec<Touch> = (0..15)
            .map(|i| {
                touch(
                    TouchKind::Click,
                    &format!("clk-{i}"),
                    "r1",
                    days_before_signup(i + 1),
                )
            })
            .collect();
        let (click, earlier) = newest_click(clicks);
        assert_eq!(click.map(|t| t.id), Some("clk-0".to_string()));
        assert_eq!(earlier.len(), MAX_EARLIER_CLICKS);
    }
}
