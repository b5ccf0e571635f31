//! A ledger entry's life: PENDING through the hold period, then ELIGIBLE, PAID by a payout,
//! EXPIRED when unclaimed; HELD while fraud review is open, VOIDED when fraud rejects. A
//! rejection after payment leaves the payment as it was and books a clawback instead.

use referral_proto::common::v1::FraudAction;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Eligible,
    Paid,
    Voided,
    Expired,
    Held,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Eligible => "ELIGIBLE",
            State::Paid => "PAID",
            State::Voided => "VOIDED",
            State::Expired => "EXPIRED",
            State::Held => "HELD",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "PENDING" => State::Pending,
            "ELIGIBLE" => State::Eligible,
            "PAID" => State::Paid,
            "VOIDED" => State::Voided,
            "EXPIRED" => State::Expired,
            "HELD" => State::Held,
            _ => return None,
        })
    }
}

/// What a fraud decision does to an entry in `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    To(State),
    /// Already paid: book a negative entry of the same amount.
    Clawback,
    Nothing,
}

pub fn on_decision(current: State, decision: FraudAction) -> Effect {
    use State::*;
    match (decision, current) {
        (FraudAction::Reject, Pending | Eligible | Held) => Effect::To(Voided),
        (FraudAction::Reject, Paid) => Effect::Clawback,
        (FraudAction::Review, Pending | Eligible) => Effect::To(Held),
        // Released: back through the hold (the scheduler makes it eligible once due).
        (FraudAction::Approve, Held) => Effect::To(Pending),
        _ => Effect::Nothing,
    }
}

/// The state a new reward starts in given what fraud said so far; `None`: not booked.
pub fn initial(decision: FraudAction) -> Option<State> {
    match decision {
        FraudAction::Reject => None,
        FraudAction::Review => Some(State::Held),
        _ => Some(State::Pending),
    }
}

/// The stricter of two decisions (a conversion's and its signup's).
pub fn stricter(a: FraudAction, b: FraudAction) -> FraudAction {
    let rank = |x: FraudAction| match x {
        FraudAction::Reject => 3,
        FraudAction::Review => 2,
        FraudAction::Approve => 1,
        FraudAction::Unspecified => 0,
    };
    if rank(a) >= rank(b) { a } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_holds_reject_voids_and_claws_back_what_was_paid() {
        assert_eq!(
            on_decision(State::Pending, FraudAction::Review),
            Effect::To(State::Held)
        );
        assert_eq!(
            on_decision(State::Eligible, FraudAction::Review),
            Effect::To(State::Held)
        );
        assert_eq!(
            on_decision(State::Held, FraudAction::Approve),
            Effect::To(State::Pending)
        );
        assert_eq!(
            on_decision(State::Held, FraudAction::Reject),
            Effect::To(State::Voided)
        );
        assert_eq!(on_decision(State::Paid, FraudAction::Reject), Effect::Clawback);
        assert_eq!(on_decision(State::Paid, FraudAction::Review), Effect::Nothing);
        assert_eq!(on_decision(State::Voided, FraudAction::Reject), Effect::Nothing);
        assert_eq!(on_decision(State::Pending, FraudAction::Approve), Effect::Nothing);
    }

    #[test]
    fn a_new_reward_starts_from_the_stricter_decision() {
        assert_eq!(
            initial(stricter(FraudAction::Approve, FraudAction::Review)),
            Some(State::Held)
        );
        assert_eq!(initial(stricter(FraudAction::Reject, FraudAction::Review)), None);
        assert_eq!(initial(FraudAction::Unspecified), Some(State::Pending));
        for s in ["PENDING", "ELIGIBLE", "PAID", "VOIDED", "EXPIRED", "HELD"] {
            assert_eq!(State::parse(s).map(State::as_str), Some(s));
        }
    }
}
