//! The invitation state machine: statuses only move forward, and late or repeated events are
//! harmless no-ops rather than errors, because provider webhooks arrive out of order and twice.

api_enum! {
    /// Where an invitation is in its life.
    pub enum InvitationStatus ("invitation status") {
        /// Fraud asked for a human look (or could not answer in time); not sent yet.
        PendingReview => "PENDING_REVIEW",
        /// Accepted and waiting for its `scheduledFor` instant.
        Scheduled => "SCHEDULED",
        Sent => "SENT",
        Delivered => "DELIVERED",
        Opened => "OPENED",
        Clicked => "CLICKED",
        SignedUp => "SIGNED_UP",
        Converted => "CONVERTED",
        /// The attribution window after sending passed without a signup.
        Expired => "EXPIRED",
        Bounced => "BOUNCED",
        Cancelled => "CANCELLED",
        /// Fraud rejected it; never sent.
        Blocked => "BLOCKED",
    }
}

impl InvitationStatus {
    /// Position on the forward path PENDING_REVIEW < SCHEDULED < SENT < … < CONVERTED;
    /// `None` for the terminal statuses, which are off that path.
    pub const fn progress_rank(self) -> Option<u8> {
        match self {
            Self::PendingReview => Some(0),
            Self::Scheduled => Some(1),
            Self::Sent => Some(2),
            Self::Delivered => Some(3),
            Self::Opened => Some(4),
            Self::Clicked => Some(5),
            Self::SignedUp => Some(6),
            Self::Converted => Some(7),
            Self::Expired | Self::Bounced | Self::Cancelled | Self::Blocked => None,
        }
    }

    /// Nothing moves out of a terminal status. EXPIRED is terminal because a signup through
    /// an expired invitation's link falls outside the attribution window; BOUNCED because
    /// an undelivered email cannot be clicked.
    pub const fn is_terminal(self) -> bool {
        self.progress_rank().is_none()
    }

    /// Not yet handed to a provider: still cancellable, and counted against the referrer's
    /// queue limit.
    pub const fn is_unsent(self) -> bool {
        matches!(self, Self::PendingReview | Self::Scheduled)
    }

    /// Sent and still able to lead to a signup: what "an open invitation" means when a
    /// signup is matched to an invitation by the recipient's email (the attribution window
    /// is checked separately, on the send time).
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Sent | Self::Delivered | Self::Opened | Self::Clicked)
    }
}

/// What to do with a request to move an invitation from one status to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Store the new status.
    Apply,
    /// Keep the current status and report success: a repeated or late event (DELIVERED after
    /// CLICKED, an expiry sweep that raced a signup) carries no news.
    Ignore,
    /// The move is not allowed; tell the caller why.
    Reject(IllegalTransition),
}

/// A status change the state machine forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an invitation cannot move from {from} to {to}: {reason}")]
pub struct IllegalTransition {
    pub from: InvitationStatus,
    pub to: InvitationStatus,
    pub reason: &'static str,
}

/// The forward-only rule. Along the progress path a later status applies and an earlier one
/// is ignored; the terminal statuses have their own entry rules:
/// CANCELLED only before sending, BLOCKED only from review, EXPIRED only once sent and
/// before a signup, BOUNCED only around sending (a bounce report after the recipient
/// opened or clicked, or after a signup, is ignored).
pub fn transition(from: InvitationStatus, to: InvitationStatus) -> Transition {
    use InvitationStatus::*;

    let reject = |reason| Transition::Reject(IllegalTransition { from, to, reason });
    if from == to {
        return Transition::Ignore;
    }
    if from.is_terminal() {
        return reject("its status is final");
    }
    match (to, from) {
        // Along the progress path (`from` is not terminal here, so it has a rank).
        (PendingReview | Scheduled | Sent | Delivered | Opened | Clicked | SignedUp | Converted, _) => {
            if to.progress_rank() > from.progress_rank() {
                Transition::Apply
            } else {
                Transition::Ignore
            }
        }
        (Cancelled, _) if from.is_unsent() => Transition::Apply,
        (Cancelled, _) => reject("only an invitation that has not been sent can be cancelled"),
        (Blocked, PendingReview) => Transition::Apply,
        (Blocked, _) => reject("only an invitation held for review can be blocked"),
        (Expired, Sent | Delivered | Opened | Clicked) => Transition::Apply,
        (Expired, SignedUp | Converted) => Transition::Ignore,
        (Expired, _) => reject("an invitation that was never sent cannot expire"),
        (Bounced, Scheduled | Sent | Delivered) => Transition::Apply,
        (Bounced, Opened | Clicked | SignedUp | Converted) => Transition::Ignore,
        (Bounced, _) => reject("an invitation that was never sent cannot bounce"),
    }
}

api_enum! {
    /// How an invitation reaches its recipient.
    pub enum Channel ("channel") {
        Email => "EMAIL",
        Sms => "SMS",
        Link => "LINK",
        Qr => "QR",
        Social => "SOCIAL",
    }
}

impl Channel {
    /// EMAIL and SMS are sent by us at `scheduledFor`; LINK, QR and SOCIAL only carry the
    /// code, which the referrer shares themselves.
    pub const fn is_sent_by_us(self) -> bool {
        matches!(self, Self::Email | Self::Sms)
    }
}

/// The fraud screening of a new invitation, as far as its status is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Screening {
    /// Action APPROVE.
    Approved,
    /// Action REVIEW.
    NeedsReview,
    /// Action REJECT.
    Rejected,
    /// fraud-svc did not answer in time; it assesses the invitation later from the event log.
    Unavailable,
}

/// The status an invitation is created in.
pub fn initial_status(screening: Screening, channel: Channel) -> InvitationStatus {
    match screening {
        Screening::Approved => released_status(channel),
        Screening::NeedsReview | Screening::Unavailable => InvitationStatus::PendingReview,
        Screening::Rejected => InvitationStatus::Blocked,
    }
}

/// The status of an invitation once it may go out (on creation, or when a review approves
/// it): SCHEDULED if we send it, SENT if the referrer shares it themselves.
pub fn released_status(channel: Channel) -> InvitationStatus {
    if channel.is_sent_by_us() {
        InvitationStatus::Scheduled
    } else {
        InvitationStatus::Sent
    }
}

#[cfg(test)]
mod tests {
    use super::InvitationStatus::*;
    use super::*;

    /// Expected outcome for every (from, to) pair: rows are `from`, columns are `to`, both in
    /// declaration order; A = Apply, I = Ignore, R = Reject.
    const TABLE: [&str; 12] = [
        //   PR SC SE DE OP CL SU CO EX BO CA BL
        /* PR */ "I  A  A  A  A  A  A  A  R  R  A  A",
        /* SC */ "I  I  A  A  A  A  A  A  R  A  A  R",
        /* SE */ "I  I  I  A  A  A  A  A  A  A  R  R",
        /* DE */ "I  I  I  I  A  A  A  A  A  A  R  R",
        /* OP */ "I  I  I  I  I  A  A  A  A  I  R  R",
        /* CL */ "I  I  I  I  I  I  A  A  A  I  R  R",
        /* SU */ "I  I  I  I  I  I  I  A  I  I  R  R",
        /* CO */ "I  I  I  I  I  I  I  I  I  I  R  R",
        /* EX */ "R  R  R  R  R  R  R  R  I  R  R  R",
        /* BO */ "R  R  R  R  R  R  R  R  R  I  R  R",
        /* CA */ "R  R  R  R  R  R  R  R  R  R  I  R",
        /* BL */ "R  R  R  R  R  R  R  R  R  R  R  I",
    ];

    fn outcome(t: &Transition) -> &'static str {
        match t {
            Transition::Apply => "A",
            Transition::Ignore => "I",
            Transition::Reject(_) => "R",
        }
    }

    #[test]
    fn every_pair_matches_the_table() {
        for (row, from) in TABLE.iter().zip(InvitationStatus::ALL) {
            let expected: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(expected.len(), InvitationStatus::ALL.len());
            for (want, to) in expected.iter().zip(InvitationStatus::ALL) {
                let got = transition(*from, *to);
                assert_eq!(outcome(&got), *want, "{from} -> {to}: {got:?}");
            }
        }
    }

    #[test]
    fn a_late_delivery_never_overwrites_a_click() {
        assert_eq!(transition(Clicked, Delivered), Transition::Ignore);
        assert_eq!(transition(Clicked, Opened), Transition::Ignore);
        assert_eq!(transition(Delivered, Clicked), Transition::Apply);
    }

    #[test]
    fn repeated_events_are_no_ops() {
        for s in InvitationStatus::ALL.iter().copied() {
            assert_eq!(transition(s, s), Transition::Ignore, "{s}");
        }
    }

    #[test]
    fn nothing_leaves_a_terminal_status() {
        for from in [Expired, Bounced, Cancelled, Blocked] {
            assert!(from.is_terminal());
            for to in InvitationStatus::ALL.iter().copied().filter(|to| *to != from) {
                assert!(
                    matches!(transition(from, to), Transition::Reject(_)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn cancelling_after_sending_is_rejected_with_a_reason() {
        assert_eq!(transition(Scheduled, Cancelled), Transition::Apply);
        let Transition::Reject(err) = transition(Sent, Cancelled) else {
            panic!("cancel after SENT must be rejected");
        };
        assert_eq!(
            err.to_string(),
            "an invitation cannot move from SENT to CANCELLED: \
             only an invitation that has not been sent can be cancelled"
        );
    }

    #[test]
    fn an_expiry_sweep_racing_a_signup_is_ignored() {
        assert_eq!(transition(SignedUp, Expired), Transition::Ignore);
        assert_eq!(transition(Converted, Expired), Transition::Ignore);
        assert!(matches!(transition(Scheduled, Expired), Transition::Reject(_)));
    }

    #[test]
    fn status_predicates() {
        let unsent: Vec<_> = InvitationStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_unsent())
            .collect();
        assert_eq!(unsent, [PendingReview, Scheduled]);
        let open: Vec<_> = InvitationStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open, [Sent, Delivered, Opened, Clicked]);
        assert_eq!(SignedUp.progress_rank(), Some(6));
        assert_eq!(Blocked.progress_rank(), None);
    }

    #[test]
    fn status_names_are_the_api_names() {
        assert_eq!(PendingReview.as_str(), "PENDING_REVIEW");
        assert_eq!(SignedUp.as_str(), "SIGNED_UP");
        assert_eq!(InvitationStatus::parse("CANCELLED"), Ok(Cancelled));
        assert!(InvitationStatus::parse("CANCELED").is_err());
        assert_eq!(Channel::parse("SMS"), Ok(Channel::Sms));
    }

    #[test]
    fn initial_status_follows_screening_and_channel() {
        assert_eq!(initial_status(Screening::Approved, Channel::Email), Scheduled);
        assert_eq!(initial_status(Screening::Approved, Channel::Sms), Scheduled);
        for channel in [Channel::Link, Channel::Qr, Channel::Social] {
            assert_eq!(initial_status(Screening::Approved, channel), Sent);
        }
        for channel in Channel::ALL.iter().copied() {
            assert_eq!(initial_status(Screening::NeedsReview, channel), PendingReview);
            assert_eq!(initial_status(Screening::Unavailable, channel), PendingReview);
            assert_eq!(initial_status(Screening::Rejected, channel), Blocked);
            // Approval after review is a legal move.
            assert_eq!(
                transition(PendingReview, released_status(channel)),
                Transition::Apply
            );
        }
    }
}
