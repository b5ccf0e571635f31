//! invite-svc's retention rules (run by `referral_common::retention::RetentionJob`, which
//! adds the outbox, dedupe and idempotency rules every service shares). Kept apart from the
//! `Store` trait: plain SQL over invite-svc's own tables, the same text on both engines.
//!
//! - **invitations**: a closed invitation (SIGNED_UP, CONVERTED, EXPIRED, BOUNCED,
//!   CANCELLED, BLOCKED) untouched for `RETENTION_ANONYMISE_AFTER` (365 days) loses its
//!   personal fields (recipient email, phone, name and lookup key, referrer and business
//!   name, message, wedding date, IP, device): non-empty ones become `pii::TOMBSTONE`; the
//!   row, its status and its counts stay. Purged after `RETENTION_PURGE_AFTER` (3 years).
//! - **clicks**: IP, user agent, device and visitor id are emptied
//!   `RETENTION_CLICK_GRACE` (7 days) after the click's attribution window closed
//!   (`expires_at`); the row (code, referrer, invitation, UTM, time) stays for attribution
//!   reports and counts. Purged 3 years after its attribution window closed.
//! - **signups**: email, name, IP and device anonymised after 365 days (the row and its
//!   attribution stay: conversions and the ledger refer to it).
//!
//! Conversions are kept: they are money facts the ledger and reports need.

use referral_common::retention::{Action, RetentionArgs, Rule};

/// Statuses an invitation never leaves (and SIGNED_UP / CONVERTED, whose story is told).
macro_rules! closed {
    () => {
        "status IN ('SIGNED_UP', 'CONVERTED', 'EXPIRED', 'BOUNCED', 'CANCELLED', 'BLOCKED')"
    };
}

/// Personal fields of an invitation still holding something.
macro_rules! invitation_personal {
    () => {
        "(recipient_email NOT IN ('', 'erased') OR recipient_phone NOT IN ('', 'erased')
          OR recipient_name NOT IN ('', 'erased') OR recipient_key NOT IN ('', 'erased')
          OR referrer_name NOT IN ('', 'erased') OR business_name NOT IN ('', 'erased')
          OR message NOT IN ('', 'erased') OR wedding_date NOT IN ('', 'erased')
          OR ip <> '' OR device_id <> '')"
    };
}

macro_rules! tomb {
    ($col:literal) => {
        concat!($col, " = CASE WHEN ", $col, " = '' THEN '' ELSE 'erased' END")
    };
}

macro_rules! click_personal {
    () => {
        // The very expression of the partial index clicks_personal_by_expiry (0083).
        "(ip <> '' OR user_agent <> '' OR device_id <> '' OR visitor_id <> '')"
    };
}

macro_rules! signup_personal {
    () => {
        "(email NOT IN ('', 'erased') OR email_norm NOT IN ('', 'erased')
          OR name NOT IN ('', 'erased') OR ip <> '' OR device_id <> '')"
    };
}

pub fn rules(args: &RetentionArgs) -> Vec<Rule> {
    // The attribution window is part of each click's expires_at; the grace comes after it.
    vec![
        Rule {
            kind: "invitations",
            action: Action::Anonymise,
            age: args.anonymise_after,
            count: concat!(
                "SELECT count(*) FROM invitations WHERE ",
                closed!(),
                " AND updated_at < $1 AND ",
                invitation_personal!()
            ),
            apply: concat!(
                "UPDATE invitations SET ",
                tomb!("recipient_email"),
                ", ",
                tomb!("recipient_phone"),
                ", ",
                tomb!("recipient_name"),
                ", ",
                tomb!("recipient_key"),
                ", ",
                tomb!("referrer_name"),
                ", ",
                tomb!("business_name"),
                ", ",
                tomb!("message"),
                ", ",
                tomb!("wedding_date"),
                ", ip = '', device_id = '' WHERE id IN (SELECT id FROM invitations WHERE ",
                closed!(),
                " AND updated_at < $1 AND ",
                invitation_personal!(),
                " LIMIT $2)"
            ),
            also: None,
        },
        Rule {
            kind: "invitations",
            action: Action::Purge,
            age: args.purge_after,
            count: concat!(
                "SELECT count(*) FROM invitations WHERE ",
                closed!(),
                " AND updated_at < $1"
            ),
            apply: concat!(
                "DELETE FROM invitations WHERE id IN (SELECT id FROM invitations WHERE ",
                closed!(),
                " AND updated_at < $1 LIMIT $2)"
            ),
            also: None,
        },
        Rule {
            kind: "clicks",
            action: Action::Anonymise,
            age: args.click_grace,
            count: concat!(
                "SELECT count(*) FROM clicks WHERE expires_at < $1 AND ",
                click_personal!()
            ),
            apply: concat!(
                "UPDATE clicks SET ip = '', user_agent = '', device_id = '', visitor_id = ''
                 WHERE click_id IN (SELECT click_id FROM clicks WHERE expires_at < $1 AND ",
                click_personal!(),
                " LIMIT $2)"
            ),
            also: None,
        },
        Rule {
            kind: "clicks",
            action: Action::Purge,
            age: args.purge_after,
            // By the end of the attribution window (one index serves both click rules).
            count: "SELECT count(*) FROM clicks WHERE expires_at < $1",
            apply: "DELETE FROM clicks WHERE click_id IN
                    (SELECT click_id FROM clicks WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
            also: None,
        },
        Rule {
            kind: "signups",
            action: Action::Anonymise,
            age: args.anonymise_after,
            count: concat!(
                "SELECT count(*) FROM signups WHERE created_at < $1 AND ",
                signup_personal!()
            ),
            apply: concat!(
                "UPDATE signups SET ",
                tomb!("email"),
                ", ",
                tomb!("email_norm"),
                ", ",
                tomb!("name"),
                ", ip = '', device_id = '' WHERE id IN (SELECT id FROM signups WHERE created_at < $1 AND ",
                signup_personal!(),
                " LIMIT $2)"
            ),
            also: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL spells the tombstone as a literal; it must be the one `pii` defines.
    #[test]
    fn the_tombstone_is_pii_s() {
        assert_eq!(referral_common::pii::TOMBSTONE, "erased");
        assert!(
            rules(&RetentionArgs::default())
                .iter()
                .all(|r| !r.apply.is_empty())
        );
    }
}
