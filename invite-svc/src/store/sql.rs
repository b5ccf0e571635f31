//! The SQL of invite-svc, written once and instantiated for Postgres and SQLite by
//! `sql_store!`. Each backend supplies `begin_write()` (Postgres: a plain transaction;
//! SQLite: BEGIN IMMEDIATE, its one-writer lock), `stage()` (outbox insert) and the
//! row-lock suffix (`FOR UPDATE` in Postgres, nothing in SQLite).

macro_rules! sql_store {
    ($store:ty, $for_update:literal, $skip_locked:literal) => {
        /// Rows per multi-row statement of a click batch: 14 binds a row stays under
        /// SQLite's 32,766 and Postgres' 65,535 bind parameters.
        const CLICK_CHUNK: usize = 1_000;

        use chrono::{DateTime, Utc};
        use referral_common::audit::{self, AuditEntry};
        use referral_proto::events::v1::Event;

        use crate::{
            domain::status::{self, InvitationStatus, Transition},
            store::{
                Claimed, ClickRow, ClicksOutcome, CodeRow, ConversionRow, CreateOutcome, FraudOutcome, InvitationRow, NewConversion,
                NewInvitation, Placer, ReferrerRow, SignupRow, SlotUsage, Store, StoreResult, TransitionOutcome,
                WebhookTally, buckets, events, sealed,
            },
        };

        const INVITATION_COLS: &str = "id, code, referrer_id, referrer_kind, referee_kind, vendor_type, flow, channel, recipient_email, recipient_phone, recipient_name, recipient_timezone, recipient_key, status, status_reason, risk_json, template_id, template_variant, message, campaign_id, utm_source, utm_medium, utm_campaign, wedding_date, scheduled_for, sent_at, expires_at, ip, device_id, created_at, updated_at, referrer_name, business_name";

        impl Store for $store {
            fn outbox(&self) -> &Outbox {
                &self.outbox
            }

            fn pii(&self) -> &referral_common::pii::PiiKeys {
                &self.pii
            }

            async fn reencrypt(&self, batch: i64) -> StoreResult<Vec<(&'static str, sealed::Resealed)>> {
                let mut out = Vec::new();
                for (table, pk, cols, key) in [
                    ("invitations", "id", &sealed::INVITATION_SEALED[..], Some("recipient_key")),
                    ("clicks", "click_id", &sealed::CLICK_SEALED[..], None),
                    ("signups", "id", &sealed::SIGNUP_SEALED[..], Some("email_norm")),
                ] {
                    let mut total = sealed::Resealed::default();
                    let mut after = String::new();
                    loop {
                        let (counts, last) = self.reencrypt_batch(table, pk, cols, key, &after, batch).await?;
                        total.examined += counts.examined;
                        total.changed += counts.changed;
                        match last {
                            Some(last) if counts.examined == batch.max(1) as u64 => after = last,
                            _ => break,
                        }
                    }
                    out.push((table, total));
                }
                self.after_reencrypt().await?;
                Ok(out)
            }

            async fn consumer_offset(&self, source: &str) -> StoreResult<i64> {
                let mut conn = self.pool.acquire().await?;
                Ok(Self::load_offset(&mut conn, source).await?)
            }

            async fn apply_fraud(
                &self,
                source: &str,
                last_offset: i64,
                outcomes: Vec<(String, Option<FraudOutcome>)>,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                for (event_id, outcome) in outcomes {
                    if !Self::first_time(&mut tx, &event_id).await? {
                        continue;
                    }
                    if let Some(outcome) = outcome {
                        self.apply_fraud_outcome(&mut tx, outcome).await?;
                    }
                }
                Self::save_offset(&mut tx, source, last_offset).await?;
                tx.commit().await?;
                self.outbox.wake();
                Ok(())
            }

            async fn insert_code(&self, row: &CodeRow, event: &Event) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let inserted = sqlx::query(
                    "INSERT INTO referral_codes (code, referrer_id, referrer_kind, vendor_type, campaign_id, landing_url, invitation_id, clicks, signups, conversions, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, $8) ON CONFLICT (code) DO NOTHING",
                )
                .bind(&row.code)
                .bind(&row.referrer_id)
                .bind(&row.referrer_kind)
                .bind(&row.vendor_type)
                .bind(&row.campaign_id)
                .bind(&row.landing_url)
                .bind(&row.invitation_id)
                .bind(row.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !inserted {
                    return Ok(false);
                }
                Self::stage(&mut tx, event).await?;
                tx.commit().await?;
                self.outbox.wake();
                Ok(true)
            }

            async fn get_code(&self, code: &str) -> StoreResult<Option<CodeRow>> {
                Ok(sqlx::query_as(
                    "SELECT code, referrer_id, referrer_kind, vendor_type, campaign_id, landing_url, invitation_id, clicks, signups, conversions, created_at FROM referral_codes WHERE code = $1",
                )
                .bind(code)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn get_referrer(&self, id: &str) -> StoreResult<ReferrerRow> {
                let row: Option<ReferrerRow> =
                    sqlx::query_as("SELECT id, tier, queued, updated_at FROM referrers WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.unwrap_or_else(|| ReferrerRow {
                    id: id.to_string(),
                    tier: "REGULAR".into(),
                    queued: 0,
                    updated_at: referral_common::ids::now(),
                }))
            }

            async fn set_tier(&self, id: &str, tier: &str, audit: &AuditEntry) -> StoreResult<ReferrerRow> {
                let now = referral_common::ids::now();
                let mut tx = self.begin_write().await?;
                // A referrer with no row is REGULAR: that is its tier before.
                let before: Option<String> = sqlx::query_scalar(concat!("SELECT tier FROM referrers WHERE id = $1", $for_update))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let row: ReferrerRow = sqlx::query_as(
                    "INSERT INTO referrers (id, tier, queued, updated_at) VALUES ($1, $2, 0, $3)
                     ON CONFLICT (id) DO UPDATE SET tier = excluded.tier, updated_at = excluded.updated_at
                     RETURNING id, tier, queued, updated_at",
                )
                .bind(id)
                .bind(tier)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                Self::stage(&mut tx, &events::tier_changed(&row)).await?;
                let entry = audit
                    .clone()
                    .before(serde_json::json!({ "tier": before.as_deref().unwrap_or("REGULAR") }))
                    .after(serde_json::json!({ "tier": row.tier }));
                audit::record(&mut *tx, &entry).await?;
                tx.commit().await?;
                self.outbox.wake();
                Ok(row)
            }

            async fn create_invitation(&self, new: NewInvitation, place: Placer<'_>) -> StoreResult<CreateOutcome> {
                let mut row = new.row;
                let mut tx = self.begin_write().await?;
                // Serialise one referrer's creations: duplicates and pacing are decided here.
                sqlx::query("INSERT INTO referrers (id, tier, queued, updated_at) VALUES ($1, 'REGULAR', 0, $2) ON CONFLICT (id) DO NOTHING")
                    .bind(&row.referrer_id)
                    .bind(row.created_at)
                    .execute(&mut *tx)
                    .await?;
                let queued: i64 = sqlx::query_scalar(concat!("SELECT queued FROM referrers WHERE id = $1", $for_update))
                    .bind(&row.referrer_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if !row.recipient_key.is_empty() {
                    let existing: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM invitations WHERE referrer_id = $1 AND recipient_key = $2 AND created_at > $3
                         AND status NOT IN ('CANCELLED', 'BLOCKED') ORDER BY created_at LIMIT 1",
                    )
                    .bind(&row.referrer_id)
                    .bind(&row.recipient_key)
                    .bind(new.duplicate_since)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(existing_id) = existing {
                        return Ok(CreateOutcome::Duplicate { existing_id });
                    }
                }
                // Checked again here (the app checked before asking fraud-svc): a suppression
                // committed meanwhile still refuses it.
                if Self::suppressed_in(&mut tx, &new.contact_lookup).await? {
                    return Ok(CreateOutcome::Suppressed);
                }
                if new.paced {
                    // "More than max_queued unsent" is refused (docs/api.md): the 1001st is accepted.
                    if queued > new.max_queued {
                        return Ok(CreateOutcome::QueueFull { queued });
                    }
                    let since = crate::domain::quota::day_bucket(row.created_at);
                    let used: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(
                        "SELECT bucket_kind, bucket_start, used FROM send_slots WHERE referrer_id = $1 AND bucket_start >= $2",
                    )
                    .bind(&row.referrer_id)
                    .bind(since)
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut usage = SlotUsage::default();
                    for (kind, start, n) in used {
                        let n = u32::try_from(n).unwrap_or(u32::MAX);
                        if kind == "H" {
                            usage.hours.insert(start, n);
                        } else {
                            usage.days.insert(start, n);
                        }
                    }
                    let at = place(&usage);
                    row.scheduled_for = Some(at);
                    for (kind, start) in buckets(at) {
                        sqlx::query(
                            "INSERT INTO send_slots (referrer_id, bucket_kind, bucket_start, used) VALUES ($1, $2, $3, 1)
                             ON CONFLICT (referrer_id, bucket_kind, bucket_start) DO UPDATE SET used = send_slots.used + 1",
                        )
                        .bind(&row.referrer_id)
                        .bind(kind)
                        .bind(start)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query("UPDATE referrers SET queued = queued + 1 WHERE id = $1")
                        .bind(&row.referrer_id)
                        .execute(&mut *tx)
                        .await?;
                }
                let code_taken = sqlx::query(
                    "INSERT INTO referral_codes (code, referrer_id, referrer_kind, vendor_type, campaign_id, landing_url, invitation_id, clicks, signups, conversions, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, $8) ON CONFLICT (code) DO NOTHING",
                )
                .bind(&row.code)
                .bind(&row.referrer_id)
                .bind(&row.referrer_kind)
                .bind(&row.vendor_type)
                .bind(&row.campaign_id)
                .bind(&new.landing_url)
                .bind(&row.id)
                .bind(row.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 0;
                if code_taken {
                    return Ok(CreateOutcome::CodeTaken);
                }
                let stored = sealed::seal(&self.pii, &row);
                sqlx::query(
                    "INSERT INTO invitations (id, code, referrer_id, referrer_kind, referee_kind, vendor_type, flow, channel, recipient_email, recipient_phone, recipient_name, recipient_timezone, recipient_key, status, status_reason, risk_json, template_id, template_variant, message, campaign_id, utm_source, utm_medium, utm_campaign, wedding_date, scheduled_for, sent_at, expires_at, ip, device_id, created_at, updated_at, referrer_name, business_name)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)",
                )
                .bind(&row.id)
                .bind(&row.code)
                .bind(&row.referrer_id)
                .bind(&row.referrer_kind)
                .bind(&row.referee_kind)
                .bind(&row.vendor_type)
                .bind(&row.flow)
                .bind(&row.channel)
                .bind(&stored.recipient_email)
                .bind(&stored.recipient_phone)
                .bind(&stored.recipient_name)
                .bind(&row.recipient_timezone)
                .bind(&row.recipient_key)
                .bind(&row.status)
                .bind(&row.status_reason)
                .bind(&row.risk_json)
                .bind(&row.template_id)
                .bind(&row.template_variant)
                .bind(&stored.message)
                .bind(&row.campaign_id)
                .bind(&row.utm_source)
                .bind(&row.utm_medium)
                .bind(&row.utm_campaign)
                .bind(&stored.wedding_date)
                .bind(row.scheduled_for)
                .bind(row.sent_at)
                .bind(row.expires_at)
                .bind(&stored.ip)
                .bind(&stored.device_id)
                .bind(row.created_at)
                .bind(row.updated_at)
                .bind(&stored.referrer_name)
                .bind(&row.business_name)
                .execute(&mut *tx)
                .await?;
                if !new.contact_lookup.is_empty() {
                    sqlx::query("UPDATE invitations SET contact_lookup = $2 WHERE id = $1")
                        .bind(&row.id)
                        .bind(&new.contact_lookup)
                        .execute(&mut *tx)
                        .await?;
                }
                for event in events::invitation_created(&row, &self.pii) {
                    Self::stage(&mut tx, &event).await?;
                }
                tx.commit().await?;
                self.outbox.wake();
                Ok(CreateOutcome::Created(Box::new(row)))
            }

            async fn get_invitation(&self, id: &str) -> StoreResult<Option<InvitationRow>> {
                let row: Option<InvitationRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {INVITATION_COLS} FROM invitations WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                sealed::open_opt(&self.pii, row)
            }

            async fn list_invitations(
                &self,
                referrer_id: &str,
                status: Option<&str>,
                after: Option<&str>,
                limit: i64,
            ) -> StoreResult<Vec<InvitationRow>> {
                let rows: Vec<InvitationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {INVITATION_COLS} FROM invitations WHERE referrer_id = $1 AND ($2 = '' OR status = $2) AND id > $3 ORDER BY id LIMIT $4"
                )))
                .bind(referrer_id)
                .bind(status.unwrap_or(""))
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                sealed::open_all(&self.pii, rows)
            }

            async fn transition(&self, id: &str, to: &str, reason: &str, at: DateTime<Utc>) -> StoreResult<TransitionOutcome> {
                let mut tx = self.begin_write().await?;
                let outcome = self.transition_in(&mut tx, id, to, reason, at).await?;
                tx.commit().await?;
                if matches!(outcome, TransitionOutcome::Applied(_)) {
                    self.outbox.wake();
                }
                Ok(outcome)
            }

            async fn cancel(
                &self,
                id: &str,
                reason: &str,
                at: DateTime<Utc>,
                audit: Option<&AuditEntry>,
            ) -> StoreResult<TransitionOutcome> {
                let mut tx = self.begin_write().await?;
                let before: Option<String> = sqlx::query_scalar(concat!("SELECT status FROM invitations WHERE id = $1", $for_update))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let outcome = self.transition_in(&mut tx, id, "CANCELLED", reason, at).await?;
                if let (TransitionOutcome::Applied(row), Some(audit)) = (&outcome, audit) {
                    let entry = audit
                        .clone()
                        .before(serde_json::json!({ "status": before, "referrerId": row.referrer_id }))
                        .after(serde_json::json!({ "status": row.status, "referrerId": row.referrer_id }))
                        .note(reason);
                    audit::record(&mut *tx, &entry).await?;
                }
                tx.commit().await?;
                if matches!(outcome, TransitionOutcome::Applied(_)) {
                    self.outbox.wake();
                }
                Ok(outcome)
            }

            async fn claim_due(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> StoreResult<Option<Claimed>> {
                let mut tx = self.begin_write().await?;
                let claimed: Option<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE invitations SET send_attempts = send_attempts + 1, send_lease_until = $2
                     WHERE id = (SELECT id FROM invitations WHERE status = 'SCHEDULED' AND channel IN ('EMAIL', 'SMS')
                                 AND scheduled_for <= $1
                                 AND (send_retry_at IS NULL OR send_retry_at <= $1)
                                 AND (send_lease_until IS NULL OR send_lease_until <= $1)
                                 AND parked_at IS NULL
                                 ORDER BY scheduled_for, id LIMIT 1{})
                     RETURNING {INVITATION_COLS}, send_attempts",
                    $skip_locked
                )))
                .bind(now)
                .bind(lease_until)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                claimed
                    .map(|c| Ok(Claimed { row: sealed::open(&self.pii, c.row)?, send_attempts: c.send_attempts }))
                    .transpose()
            }

            async fn record_sent(&self, id: &str, attempt: i64, provider_message_id: &str, at: DateTime<Utc>) -> StoreResult<TransitionOutcome> {
                let mut tx = self.begin_write().await?;
                // Sent is sent, even if a slow attempt lost its lease: record it either way.
                sqlx::query(
                    "UPDATE invitations SET send_lease_until = CASE WHEN send_attempts = $2 THEN NULL ELSE send_lease_until END,
                     send_error = '', provider_message_id = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(attempt)
                .bind(provider_message_id)
                .execute(&mut *tx)
                .await?;
                let outcome = self.transition_in(&mut tx, id, "SENT", "", at).await?;
                tx.commit().await?;
                self.outbox.wake();
                Ok(outcome)
            }

            async fn record_send_failure(
                &self,
                id: &str,
                attempt: i64,
                error: &str,
                retry_at: Option<DateTime<Utc>>,
                at: DateTime<Utc>,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let current: Option<i64> =
                    sqlx::query_scalar(concat!("SELECT send_attempts FROM invitations WHERE id = $1", $for_update))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if current != Some(attempt) {
                    // A later attempt holds the lease; its outcome is the one that counts.
                    return Ok(());
                }
                let error: String = error.chars().take(500).collect();
                sqlx::query("UPDATE invitations SET send_lease_until = NULL, send_retry_at = $2, send_error = $3 WHERE id = $1")
                    .bind(id)
                    .bind(retry_at)
                    .bind(&error)
                    .execute(&mut *tx)
                    .await?;
                if retry_at.is_none() {
                    self.transition_in(&mut tx, id, "BOUNCED", &error, at).await?;
                }
                tx.commit().await?;
                self.outbox.wake();
                Ok(())
            }

            async fn record_send_panic(
                &self,
                id: &str,
                attempt: i64,
                reason: &str,
                park_after: i64,
                retry_at: DateTime<Utc>,
                at: DateTime<Utc>,
            ) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let current: Option<(i64, i64)> = sqlx::query_as(concat!(
                    "SELECT send_attempts, send_panics FROM invitations WHERE id = $1",
                    $for_update
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((attempts, panics)) = current else { return Ok(false) };
                if attempts != attempt {
                    return Ok(false);
                }
                let reason: String = reason.chars().take(500).collect();
                let park = panics + 1 >= park_after;
                sqlx::query(
                    "UPDATE invitations SET send_lease_until = NULL, send_panics = send_panics + 1,
                     send_retry_at = $2, send_error = $3,
                     parked_at = CASE WHEN $4 THEN $5 ELSE parked_at END,
                     parked_reason = CASE WHEN $4 THEN $3 ELSE parked_reason END
                     WHERE id = $1",
                )
                .bind(id)
                .bind(retry_at)
                .bind(&reason)
                .bind(park)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if park {
                    let entry = AuditEntry::new(&audit::Actor::system(), audit::action::SEND_PARK, "invitation", id)
                        .after(serde_json::json!({ "reason": reason, "attempts": panics + 1 }));
                    audit::record(&mut *tx, &entry).await?;
                }
                tx.commit().await?;
                Ok(park)
            }

            async fn parked_sends(&self, before: &str, limit: i64) -> StoreResult<Vec<referral_common::parked::ParkedSend>> {
                let rows: Vec<(String, String, i64, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT id, parked_reason, send_panics, parked_at FROM invitations
                     WHERE parked_at IS NOT NULL AND id < $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(invitation_id, reason, attempts, parked_at)| referral_common::parked::ParkedSend {
                        invitation_id,
                        reason,
                        attempts,
                        parked_at,
                    })
                    .collect())
            }

            async fn release_parked_send(&self, id: &str, entry: &AuditEntry) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let released = sqlx::query(
                    "UPDATE invitations SET parked_at = NULL, parked_reason = '', send_panics = 0,
                     send_retry_at = NULL, send_lease_until = NULL WHERE id = $1 AND parked_at IS NOT NULL",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if released {
                    audit::record(&mut *tx, entry).await?;
                }
                tx.commit().await?;
                Ok(released)
            }

            async fn apply_provider_events(
                &self,
                provider: &str,
                events: &[crate::domain::webhooks::ProviderEvent],
                suppressions: &std::collections::HashMap<String, crate::store::consent::NewSuppression>,
                at: DateTime<Utc>,
            ) -> StoreResult<WebhookTally> {
                use crate::domain::webhooks::Outcome;
                let mut tally = WebhookTally::default();
                let mut tx = self.begin_write().await?;
                for event in events {
                    let first = sqlx::query(
                        "INSERT INTO provider_events (provider, event_id, invitation_id, kind, received_at) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (provider, event_id) DO NOTHING",
                    )
                    .bind(provider)
                    .bind(&event.event_id)
                    .bind(event.invitation_id.as_deref().unwrap_or(""))
                    .bind(&event.kind)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if !first {
                        tally.duplicates += 1;
                        continue;
                    }
                    let (Some(invitation_id), Some(target)) = (&event.invitation_id, event.outcome.status()) else {
                        tally.ignored += 1;
                        continue;
                    };
                    let reason = match event.outcome {
                        Outcome::Complained => format!("the recipient reported it as spam ({provider} {})", event.kind),
                        Outcome::Bounced => format!("bounced ({provider} {})", event.kind),
                        _ => String::new(),
                    };
                    let applied = matches!(
                        self.transition_in(&mut tx, invitation_id, target.as_str(), &reason, at).await?,
                        TransitionOutcome::Applied(_)
                    );
                    // A hard bounce or complaint suppresses the address even when the status
                    // does not move (a complaint after an open).
                    let suppressed = match (&event.outcome, suppressions.get(invitation_id)) {
                        (Outcome::Bounced | Outcome::Complained, Some(new)) => {
                            self.suppress_in(&mut tx, new, crate::domain::suppression::CANCEL_REASON).await?;
                            true
                        }
                        _ => false,
                    };
                    if applied || suppressed {
                        tally.recorded += 1;
                    } else {
                        tally.ignored += 1;
                    }
                }
                tx.commit().await?;
                if tally.recorded > 0 {
                    self.outbox.wake();
                }
                Ok(tally)
            }

            async fn forget_provider_events(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64> {
                // Bounded batches through the received_at index: a sweep never holds the
                // table for long, whatever the backlog.
                Ok(sqlx::query(
                    "DELETE FROM provider_events WHERE (provider, event_id) IN
                     (SELECT provider, event_id FROM provider_events WHERE received_at < $1 ORDER BY received_at LIMIT $2)",
                )
                .bind(before)
                .bind(limit)
                .execute(&self.pool)
                .await?
                .rows_affected())
            }

            async fn expire_due(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<u64> {
                let due: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM invitations WHERE status IN ('SENT', 'DELIVERED', 'OPENED', 'CLICKED') AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let mut expired = 0;
                for id in due {
                    if let TransitionOutcome::Applied(_) = self.transition(&id, "EXPIRED", "attribution window closed", now).await? {
                        expired += 1;
                    }
                }
                Ok(expired)
            }

            async fn record_clicks(&self, clicks: &[ClickRow]) -> StoreResult<ClicksOutcome> {
                // A whole batch (the gateway sends up to 500 redirects' clicks at once) costs a
                // handful of statements, not five per click: one code lookup, multi-row
                // click and outbox INSERTs, one counter UPDATE per code and one transition
                // per invitation. Clicks are judged in the order given.
                let mut out = ClicksOutcome::default();
                if clicks.is_empty() {
                    return Ok(out);
                }
                let mut tx = self.begin_write().await?;
                let mut codes: Vec<&str> = clicks.iter().map(|c| c.code.as_str()).collect();
                codes.sort_unstable();
                codes.dedup();
                let mut owners: std::collections::HashMap<String, (String, Option<String>)> =
                    std::collections::HashMap::with_capacity(codes.len());
                for chunk in codes.chunks(CLICK_CHUNK) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "SELECT code, referrer_id, invitation_id FROM referral_codes WHERE code IN (",
                    );
                    let mut list = q.separated(", ");
                    for code in chunk {
                        list.push_bind(*code);
                    }
                    q.push(")");
                    let rows: Vec<(String, String, Option<String>)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    owners.extend(rows.into_iter().map(|(code, referrer, invitation)| (code, (referrer, invitation))));
                }
                // `/r/{code}?inv={id}` names an invitation: believed only when it is the
                // code's own, or (for a referrer's personal code) one of the same referrer's.
                let mut named: Vec<&str> = clicks
                    .iter()
                    .filter_map(|c| c.invitation_id.as_deref())
                    .collect();
                named.sort_unstable();
                named.dedup();
                let mut inviters: std::collections::HashMap<String, String> = std::collections::HashMap::new();
                for chunk in named.chunks(CLICK_CHUNK) {
                    let mut q = sqlx::QueryBuilder::<Db>::new("SELECT id, referrer_id FROM invitations WHERE id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    inviters.extend(rows);
                }
                let mut known: Vec<ClickRow> = Vec::with_capacity(clicks.len());
                for click in clicks {
                    let Some((referrer_id, invitation_id)) = owners.get(&click.code) else {
                        out.unknown_codes += 1;
                        continue;
                    };
                    let mut click = click.clone();
                    click.referrer_id = referrer_id.clone();
                    let named = click
                        .invitation_id
                        .take()
                        .filter(|id| invitation_id.is_none() && inviters.get(id) == Some(referrer_id));
                    click.invitation_id = invitation_id.clone().or(named);
                    known.push(click);
                }
                // A retried batch repeats click ids: those rows exist and are skipped.
                let mut inserted: std::collections::HashSet<String> = std::collections::HashSet::new();
                for chunk in known.chunks(CLICK_CHUNK) {
                    let chunk: Vec<ClickRow> = chunk.iter().map(|c| sealed::seal(&self.pii, c)).collect();
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO clicks (click_id, code, referrer_id, invitation_id, visitor_id, user_agent, ip, device_id, utm_source, utm_medium, utm_campaign, occurred_at, expires_at, previous_click_id) ",
                    );
                    q.push_values(&chunk, |mut row, c| {
                        row.push_bind(&c.click_id)
                            .push_bind(&c.code)
                            .push_bind(&c.referrer_id)
                            .push_bind(&c.invitation_id)
                            .push_bind(&c.visitor_id)
                            .push_bind(&c.user_agent)
                            .push_bind(&c.ip)
                            .push_bind(&c.device_id)
                            .push_bind(&c.utm_source)
                            .push_bind(&c.utm_medium)
                            .push_bind(&c.utm_campaign)
                            .push_bind(c.occurred_at)
                            .push_bind(c.expires_at)
                            .push_bind(&c.previous_click_id);
                    });
                    q.push(" ON CONFLICT (click_id) DO NOTHING RETURNING click_id");
                    let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
                    inserted.extend(ids);
                }
                // The same click id twice in one batch is one click.
                let mut fresh: Vec<&ClickRow> = Vec::with_capacity(inserted.len());
                for click in &known {
                    if inserted.remove(&click.click_id) {
                        fresh.push(click);
                    }
                }
                out.recorded = fresh.len() as u32;
                if fresh.is_empty() {
                    tx.commit().await?;
                    return Ok(out);
                }
                let mut per_code: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
                // Each invitation moves once, at its earliest click of the batch.
                let mut first_click: std::collections::BTreeMap<&str, DateTime<Utc>> = std::collections::BTreeMap::new();
                for click in &fresh {
                    *per_code.entry(click.code.as_str()).or_default() += 1;
                    if let Some(inv) = &click.invitation_id {
                        let at = first_click.entry(inv.as_str()).or_insert(click.occurred_at);
                        *at = (*at).min(click.occurred_at);
                    }
                }
                for (code, n) in per_code {
                    sqlx::query("UPDATE referral_codes SET clicks = clicks + $2 WHERE code = $1")
                        .bind(code)
                        .bind(n)
                        .execute(&mut *tx)
                        .await?;
                }
                let staged: Vec<Event> = fresh.iter().map(|c| events::click(c, &self.pii)).collect();
                Self::stage_many(&mut tx, &staged).await?;
                for (inv, at) in first_click {
                    self.transition_in(&mut tx, inv, "CLICKED", "", at).await?;
                }
                tx.commit().await?;
                self.outbox.wake();
                Ok(out)
            }

            async fn get_click(&self, click_id: &str) -> StoreResult<Option<ClickRow>> {
                let row: Option<ClickRow> = sqlx::query_as(
                    "SELECT click_id, code, referrer_id, invitation_id, visitor_id, user_agent, ip, device_id, utm_source, utm_medium, utm_campaign, occurred_at, expires_at, previous_click_id FROM clicks WHERE click_id = $1",
                )
                .bind(click_id)
                .fetch_optional(&self.pool)
                .await?;
                sealed::open_opt(&self.pii, row)
            }

            async fn find_signup(&self, user_id: &str) -> StoreResult<Option<SignupRow>> {
                let row: Option<SignupRow> = sqlx::query_as(concat!("SELECT ", signup_cols!(), " FROM signups WHERE user_id = $1"))
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
                sealed::open_opt(&self.pii, row)
            }

            async fn open_invitation_for(&self, recipient_key: &str, since: DateTime<Utc>) -> StoreResult<Option<InvitationRow>> {
                let row: Option<InvitationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {INVITATION_COLS} FROM invitations WHERE recipient_key = $1 AND created_at > $2
                     AND status IN ('SCHEDULED', 'SENT', 'DELIVERED', 'OPENED', 'CLICKED') ORDER BY created_at DESC LIMIT 1"
                )))
                .bind(recipient_key)
                .bind(since)
                .fetch_optional(&self.pool)
                .await?;
                sealed::open_opt(&self.pii, row)
            }

            async fn referrer_email(&self, referrer_id: &str) -> StoreResult<Option<String>> {
                Ok(sqlx::query_scalar("SELECT email_norm FROM signups WHERE user_id = $1 AND email_norm <> ''")
                    .bind(referrer_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn insert_signup(&self, row: &SignupRow) -> StoreResult<SignupRow> {
                let stored = sealed::seal(&self.pii, row);
                let mut tx = self.begin_write().await?;
                let inserted = sqlx::query(
                    "INSERT INTO signups (id, user_id, user_kind, vendor_type, email, email_norm, name, attributed, invitation_id, code, referrer_id, referrer_kind, flow, reason, touchpoints_json, risk_json, click_at, ip, device_id, created_at, rejected_click)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(&row.id)
                .bind(&row.user_id)
                .bind(&row.user_kind)
                .bind(&row.vendor_type)
                .bind(&stored.email)
                .bind(&row.email_norm)
                .bind(&stored.name)
                .bind(row.attributed)
                .bind(&row.invitation_id)
                .bind(&row.code)
                .bind(&row.referrer_id)
                .bind(&row.referrer_kind)
                .bind(&row.flow)
                .bind(&row.reason)
                .bind(&row.touchpoints_json)
                .bind(&row.risk_json)
                .bind(row.click_at)
                .bind(&stored.ip)
                .bind(&stored.device_id)
                .bind(row.created_at)
                .bind(&row.rejected_click)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !inserted {
                    // Someone signed this user up first: theirs is the answer.
                    let first: SignupRow = sqlx::query_as(concat!("SELECT ", signup_cols!(), " FROM signups WHERE user_id = $1"))
                        .bind(&row.user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    return sealed::open(&self.pii, first);
                }
                let mut invitation_created_at = None;
                let mut channel = String::new();
                if row.attributed {
                    if let Some(code) = &row.code {
                        sqlx::query("UPDATE referral_codes SET signups = signups + 1 WHERE code = $1")
                            .bind(code)
                            .execute(&mut *tx)
                            .await?;
                    }
                    if let Some(inv) = &row.invitation_id {
                        let facts: Option<(DateTime<Utc>, String)> =
                            sqlx::query_as("SELECT created_at, channel FROM invitations WHERE id = $1")
                                .bind(inv)
                                .fetch_optional(&mut *tx)
                                .await?;
                        if let Some((created, ch)) = facts {
                            invitation_created_at = Some(created);
                            channel = ch;
                        }
                        self.transition_in(&mut tx, inv, "SIGNED_UP", "", row.created_at).await?;
                    }
                }
                Self::stage(&mut tx, &events::signup(row, invitation_created_at, &channel, &self.pii)?).await?;
                tx.commit().await?;
                self.outbox.wake();
                Ok(row.clone())
            }

            async fn record_conversion(&self, new: NewConversion) -> StoreResult<ConversionRow> {
                let mut tx = self.begin_write().await?;
                // Concurrent conversions of one user: exactly one may be the first paid.
                Self::lock_key(&mut tx, &format!("conversion:{}", new.user_id)).await?;
                let signup: Option<SignupRow> = sqlx::query_as(concat!("SELECT ", signup_cols!(), " FROM signups WHERE user_id = $1"))
                    .bind(&new.user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let paid = new.amount_minor > 0 && new.plan != "FREE";
                let earlier_paid: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM conversions WHERE user_id = $1 AND first_paid")
                        .bind(&new.user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let attributed_signup = signup.as_ref().filter(|s| s.attributed);
                let row = ConversionRow {
                    id: new.id,
                    user_id: new.user_id,
                    amount_minor: new.amount_minor,
                    currency: new.currency,
                    plan: new.plan,
                    annual: new.annual,
                    first_paid: paid && earlier_paid == 0,
                    attributed: attributed_signup.is_some(),
                    referrer_id: attributed_signup.and_then(|s| s.referrer_id.clone()),
                    invitation_id: attributed_signup.and_then(|s| s.invitation_id.clone()),
                    flow: attributed_signup.and_then(|s| s.flow.clone()),
                    occurred_at: new.occurred_at,
                    created_at: referral_common::ids::now(),
                };
                sqlx::query(
                    "INSERT INTO conversions (id, user_id, amount_minor, currency, plan, annual, first_paid, attributed, referrer_id, invitation_id, flow, occurred_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&row.id)
                .bind(&row.user_id)
                .bind(row.amount_minor)
                .bind(&row.currency)
                .bind(&row.plan)
                .bind(row.annual)
                .bind(row.first_paid)
                .bind(row.attributed)
                .bind(&row.referrer_id)
                .bind(&row.invitation_id)
                .bind(&row.flow)
                .bind(row.occurred_at)
                .bind(row.created_at)
                .execute(&mut *tx)
                .await?;
                if row.attributed && row.first_paid {
                    if let Some(code) = signup.as_ref().and_then(|s| s.code.clone()) {
                        sqlx::query("UPDATE referral_codes SET conversions = conversions + 1 WHERE code = $1")
                            .bind(code)
                            .execute(&mut *tx)
                            .await?;
                    }
                    if let Some(inv) = &row.invitation_id {
                        self.transition_in(&mut tx, inv, "CONVERTED", "", row.occurred_at).await?;
                    }
                }
                Self::stage(&mut tx, &events::conversion(&row, signup.as_ref())?).await?;
                tx.commit().await?;
                self.outbox.wake();
                Ok(row)
            }
        }

        impl $store {
            /// One batch of `reencrypt` on `table`: up to `limit` rows after `after` (by
            /// primary key), read and rewritten in one write transaction so a concurrent
            /// change (an erasure) is never overwritten by what was read before it.
            /// Returns the counts and the last key read.
            async fn reencrypt_batch(
                &self,
                table: &'static str,
                pk: &'static str,
                cols: &[&'static str],
                key: Option<&'static str>,
                after: &str,
                limit: i64,
            ) -> StoreResult<(sealed::Resealed, Option<String>)> {
                use sqlx::Row as _;
                let mut names = vec![pk];
                names.extend_from_slice(cols);
                names.extend(key);
                let mut tx = self.begin_write().await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM {table} WHERE {pk} > $1 ORDER BY {pk} LIMIT $2{}",
                    names.join(", "),
                    $for_update
                )))
                .bind(after)
                .bind(limit.max(1))
                .fetch_all(&mut *tx)
                .await?;
                let mut counts = sealed::Resealed::default();
                let mut last = None;
                for row in &rows {
                    counts.examined += 1;
                    let id: String = row.try_get(0)?;
                    let mut sets: Vec<(&str, String)> = Vec::new();
                    let mut first_plain = String::new();
                    for (i, col) in cols.iter().enumerate() {
                        let stored: String = row.try_get(i + 1)?;
                        if i == 0 {
                            first_plain = self.pii.open(&stored).map_err(|e| crate::store::StoreError::Sealed(format!("{table} {id}: {e}")))?;
                        }
                        if let Some(new) = sealed::reseal(&self.pii, table, &id, &stored)? {
                            sets.push((col, new));
                        }
                    }
                    if let Some(key) = key {
                        let stored: String = row.try_get(cols.len() + 1)?;
                        // An invitation's key is its recipient's e-mail (the first sealed
                        // column) when it has one, else the phone number.
                        let kind = if table == "invitations" && first_plain.is_empty() { "phone" } else { "email" };
                        if let Some(hash) = sealed::rehash(&self.pii, kind, &stored) {
                            sets.push((key, hash));
                        }
                    }
                    if !sets.is_empty() {
                        let assignments: Vec<String> =
                            sets.iter().enumerate().map(|(i, (col, _))| format!("{col} = ${}", i + 2)).collect();
                        let sql = format!("UPDATE {table} SET {} WHERE {pk} = $1", assignments.join(", "));
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&id);
                        for (_, value) in &sets {
                            q = q.bind(value);
                        }
                        q.execute(&mut *tx).await?;
                        counts.changed += 1;
                    }
                    last = Some(id);
                }
                tx.commit().await?;
                Ok((counts, last))
            }

            async fn apply_fraud_outcome(&self, tx: &mut Tx, outcome: FraudOutcome) -> StoreResult<()> {
                let now = referral_common::ids::now();
                match outcome {
                    FraudOutcome::Invitation { invitation_id, decision, risk } => {
                        let row: Option<(String, String, String)> = sqlx::query_as(concat!(
                            "SELECT status, channel, risk_json FROM invitations WHERE id = $1",
                            $for_update
                        ))
                        .bind(&invitation_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                        // Not held (decided synchronously, or gone): nothing to change.
                        let Some((_, channel, stored)) = row.filter(|r| r.0 == "PENDING_REVIEW") else {
                            return Ok(());
                        };
                        sqlx::query("UPDATE invitations SET risk_json = $2 WHERE id = $1")
                            .bind(&invitation_id)
                            .bind(risk.merged_json(&stored)?)
                            .execute(&mut **tx)
                            .await?;
                        let channel = crate::domain::status::Channel::parse(&channel).unwrap_or(crate::domain::status::Channel::Email);
                        if let Some(target) = crate::domain::review::invitation_after(decision, channel) {
                            let reason = if target == InvitationStatus::Blocked { "blocked by fraud review" } else { "" };
                            self.transition_in(tx, &invitation_id, target.as_str(), reason, now).await?;
                        }
                    }
                    FraudOutcome::Signup { signup_id, decision, risk } => {
                        let row: Option<SignupRow> =
                            sqlx::query_as(concat!("SELECT ", signup_cols!(), " FROM signups WHERE id = $1", $for_update))
                                .bind(&signup_id)
                                .fetch_optional(&mut **tx)
                                .await?;
                        let Some(row) = row else { return Ok(()) };
                        let mut row = sealed::open(&self.pii, row)?;
                        if risk.already_stored(&row.risk_json) {
                            return Ok(());
                        }
                        row.risk_json = risk.merged_json(&row.risk_json)?;
                        let unattribute = row.attributed && !crate::domain::review::signup_stays_attributed(decision);
                        if unattribute {
                            row.attributed = false;
                            row.reason = crate::domain::review::FRAUD_REJECTED.to_string();
                            if let Some(code) = &row.code {
                                sqlx::query("UPDATE referral_codes SET signups = signups - 1 WHERE code = $1 AND signups > 0")
                                    .bind(code)
                                    .execute(&mut **tx)
                                    .await?;
                            }
                        }
                        sqlx::query("UPDATE signups SET risk_json = $2, attributed = $3, reason = $4 WHERE id = $1")
                            .bind(&row.id)
                            .bind(&row.risk_json)
                            .bind(row.attributed)
                            .bind(&row.reason)
                            .execute(&mut **tx)
                            .await?;
                        // Consumers key signups by id: the new facts replace the old.
                        Self::stage(tx, &events::signup(&row, None, "", &self.pii)?).await?;
                    }
                }
                Ok(())
            }

            /// One forward-only step inside the caller's transaction, with its event.
            async fn transition_in(
                &self,
                tx: &mut Tx,
                id: &str,
                to: &str,
                reason: &str,
                at: DateTime<Utc>,
            ) -> StoreResult<TransitionOutcome> {
                let row: Option<InvitationRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {INVITATION_COLS} FROM invitations WHERE id = $1{}", $for_update)))
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await?;
                let Some(row) = row else { return Ok(TransitionOutcome::NotFound) };
                let mut row = sealed::open(&self.pii, row)?;
                let (Some(from), Some(target)) = (InvitationStatus::parse(&row.status).ok(), InvitationStatus::parse(to).ok()) else {
                    return Ok(TransitionOutcome::Rejected { row: Box::new(row), reason: format!("unknown status {to}") });
                };
                if target == InvitationStatus::Cancelled && from == InvitationStatus::Scheduled {
                    // A sender holds it: the message may already be with the provider.
                    let lease: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT send_lease_until FROM invitations WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut **tx)
                        .await?;
                    if lease.is_some_and(|until| until > at) {
                        let reason = "an invitation that is being sent cannot be cancelled".to_string();
                        return Ok(TransitionOutcome::Rejected { row: Box::new(row), reason });
                    }
                }
                match status::transition(from, target) {
                    Transition::Ignore => return Ok(TransitionOutcome::Ignored(Box::new(row))),
                    Transition::Reject(why) => {
                        return Ok(TransitionOutcome::Rejected { row: Box::new(row), reason: why.to_string() });
                    }
                    Transition::Apply => {}
                }
                // Leaving the queue (sent, cancelled, blocked) frees the referrer's queue slot.
                let was_queued = matches!(from, InvitationStatus::Scheduled | InvitationStatus::PendingReview)
                    && row.scheduled_for.is_some();
                let still_queued = matches!(target, InvitationStatus::Scheduled | InvitationStatus::PendingReview);
                if was_queued && !still_queued {
                    sqlx::query("UPDATE referrers SET queued = queued - 1 WHERE id = $1 AND queued > 0")
                        .bind(&row.referrer_id)
                        .execute(&mut **tx)
                        .await?;
                }
                if matches!(target, InvitationStatus::Cancelled | InvitationStatus::Blocked)
                    && let Some(at) = row.scheduled_for.filter(|_| was_queued)
                {
                    for (kind, start) in buckets(at) {
                        sqlx::query("UPDATE send_slots SET used = used - 1 WHERE referrer_id = $1 AND bucket_kind = $2 AND bucket_start = $3 AND used > 0")
                            .bind(&row.referrer_id)
                            .bind(kind)
                            .bind(start)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                // A provider's delivery report can overtake our own SENT record: it was sent.
                let sent = matches!(target, InvitationStatus::Sent | InvitationStatus::Delivered | InvitationStatus::Opened | InvitationStatus::Clicked);
                if sent && row.sent_at.is_none() {
                    row.sent_at = Some(at);
                    row.expires_at = Some(crate::domain::attribution::invitation_expires_at(at, self.window_days));
                }
                row.status = target.as_str().to_string();
                row.status_reason = reason.to_string();
                row.updated_at = referral_common::ids::now();
                sqlx::query("UPDATE invitations SET status = $2, status_reason = $3, sent_at = $4, expires_at = $5, updated_at = $6 WHERE id = $1")
                    .bind(&row.id)
                    .bind(&row.status)
                    .bind(&row.status_reason)
                    .bind(row.sent_at)
                    .bind(row.expires_at)
                    .bind(row.updated_at)
                    .execute(&mut **tx)
                    .await?;
                Self::stage(tx, &events::transition(&row, from, target, reason, at)).await?;
                Ok(TransitionOutcome::Applied(Box::new(row)))
            }
        }
    };
}

macro_rules! signup_cols {
    () => {
        "id, user_id, user_kind, vendor_type, email, email_norm, name, attributed, invitation_id, code, referrer_id, referrer_kind, flow, reason, touchpoints_json, risk_json, click_at, ip, device_id, created_at, rejected_click"
    };
}

pub(super) use {signup_cols, sql_store};
