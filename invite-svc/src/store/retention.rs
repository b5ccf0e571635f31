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
//! - **send_slots**: the sending pace's hourly and daily buckets, purged a week after they
//!   ended (only the current hour and day are ever read).
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
          OR ip <> '' OR device_id <> '' OR contact_lookup <> '')"
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

/// How long a sending-pace bucket is kept after it started (a day bucket is read for a day).
pub const SEND_SLOT_KEEP: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

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
                ", ip = '', device_id = '', contact_lookup = '' WHERE id IN (SELECT id FROM invitations WHERE ",
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
            // By the end of the attribution window; no index (see migration 0083).
            count: "SELECT count(*) FROM clicks WHERE expires_at < $1",
            apply: "DELETE FROM clicks WHERE click_id IN
                    (SELECT click_id FROM clicks WHERE expires_at < $1 LIMIT $2)",
            also: None,
        },
        Rule {
            kind: "send_slots",
            action: Action::Purge,
            age: SEND_SLOT_KEEP,
            count: "SELECT count(*) FROM send_slots WHERE bucket_start < $1",
            apply: "DELETE FROM send_slots WHERE (referrer_id, bucket_kind, bucket_start) IN
                    (SELECT referrer_id, bucket_kind, bucket_start FROM send_slots WHERE bucket_start < $1 LIMIT $2)",
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
    use referral_common::retention::{RetentionDb, RetentionJob, record_consumer};

    use super::*;
    use crate::store::{PgStore, SqliteStore};

    /// The SQL spells the tombstone as a literal; it must be the one `pii` defines.
    #[test]
    fn the_tombstone_is_pii_s() {
        assert_eq!(referral_common::pii::TOMBSTONE, "erased");
    }

    /// Every rule (invite-svc's and the shared ones) runs, dry and for real, on the migrated
    /// schema of both engines; an old outbox row below every consumer goes, the newest stays.
    async fn rules_run(db: RetentionDb) {
        let now = referral_common::ids::now();
        let args = RetentionArgs::default();
        let dry = RetentionArgs {
            dry_run: true,
            ..RetentionArgs::default()
        };
        referral_common::on_retention_db!(&db, pool => {
            for (id, offset) in [("old-1", 1_i64), ("old-2", 2)] {
                sqlx::query("INSERT INTO outbox (event_id, event_type, log_offset, payload, created_at) VALUES ($1, 't', $2, $3, $4)")
                    .bind(id)
                    .bind(offset)
                    .bind(vec![0u8])
                    .bind(now - chrono::Duration::days(30))
                    .execute(pool)
                    .await
                    .expect("outbox row");
            }
        });
        record_consumer(&db, "fraud-svc", 2, now).await.expect("consumer");
        let out = RetentionJob::new("invite-svc", db.clone(), &dry, rules(&dry))
            .tick(now)
            .await
            .expect("dry run");
        assert_eq!(out.iter().filter(|o| o.rows > 0).count(), 1, "{out:?}");
        let out = RetentionJob::new("invite-svc", db.clone(), &args, rules(&args))
            .tick(now)
            .await
            .expect("tick");
        let outbox = out.iter().find(|o| o.kind == "outbox").expect("outbox rule");
        assert_eq!(outbox.rows, 1, "the newest row stays: {out:?}");
    }

    #[tokio::test]
    async fn the_rules_run_on_sqlite_and_postgres() {
        referral_common::retention::on_both_engines(
            "invite_rules_run",
            |url| async move {
                SqliteStore::connect(&url, referral_common::pii::PiiKeys::for_tests())
                    .await
                    .expect("sqlite")
                    .pool()
                    .clone()
                    .into()
            },
            |url, schema| async move {
                PgStore::connect(&url, &schema, referral_common::pii::PiiKeys::for_tests())
                    .await
                    .expect("postgres")
                    .pool()
                    .clone()
                    .into()
            },
            rules_run,
        )
        .await;
    }
}
