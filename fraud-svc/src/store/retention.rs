//! fraud-svc's retention rules (run by `referral_common::retention::RetentionJob`, which
//! adds the outbox, dedupe and idempotency rules every service shares). Plain SQL over
//! fraud-svc's own tables, the same text on both engines.
//!
//! - **invitation_facts** (the velocity windows' rows: recipient key, device, IP; read over
//!   at most `RECIPIENT_WINDOW`, 30 days): purged after `RETENTION_ANONYMISE_AFTER` (365 d).
//! - **referral_facts** (self-referral evidence): email, name, IP and device anonymised
//!   after `RETENTION_ANONYMISE_AFTER`; the row (who referred whom, when) stays.
//!
//! Assessments, cases and rings are kept: they are the fraud decisions (their signals are
//! rule names and scores, not personal data).

use referral_common::retention::{Action, RetentionArgs, Rule};

macro_rules! referral_personal {
    () => {
        "(email_local NOT IN ('', 'erased') OR email_norm NOT IN ('', 'erased')
          OR name_norm NOT IN ('', 'erased') OR ip <> '' OR device_id <> '')"
    };
}

pub fn rules(args: &RetentionArgs) -> Vec<Rule> {
    vec![
        Rule {
            kind: "invitation_facts",
            action: Action::Purge,
            age: args.anonymise_after,
            count: "SELECT count(*) FROM invitation_facts WHERE occurred_at < $1",
            apply: "DELETE FROM invitation_facts WHERE id IN
                    (SELECT id FROM invitation_facts WHERE occurred_at < $1 LIMIT $2)",
            also: None,
        },
        Rule {
            kind: "referral_facts",
            action: Action::Anonymise,
            age: args.anonymise_after,
            count: concat!(
                "SELECT count(*) FROM referral_facts WHERE occurred_at < $1 AND ",
                referral_personal!()
            ),
            apply: concat!(
                "UPDATE referral_facts SET
                   email_local = CASE WHEN email_local = '' THEN '' ELSE 'erased' END,
                   email_norm = CASE WHEN email_norm = '' THEN '' ELSE 'erased' END,
                   name_norm = CASE WHEN name_norm = '' THEN '' ELSE 'erased' END,
                   ip = '', device_id = ''
                 WHERE referee_id IN (SELECT referee_id FROM referral_facts WHERE occurred_at < $1 AND ",
                referral_personal!(),
                " LIMIT $2)"
            ),
            also: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use referral_common::retention::{RetentionDb, RetentionJob};

    use super::*;
    use crate::store::{PgStore, SqliteStore};

    async fn rules_run(db: RetentionDb) {
        let now = referral_common::ids::now();
        for dry_run in [true, false] {
            let args = RetentionArgs {
                dry_run,
                ..RetentionArgs::default()
            };
            RetentionJob::new("fraud-svc", db.clone(), &args, rules(&args))
                .tick(now)
                .await
                .expect("every rule runs");
        }
    }

    /// The rules run on the migrated schema of both engines.
    #[tokio::test]
    async fn the_rules_run_on_sqlite_and_postgres() {
        referral_common::retention::on_both_engines(
            "fraud_rules_run",
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
