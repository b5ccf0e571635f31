//! The SQL of incentive-svc, written once and instantiated for Postgres and SQLite by
//! `sql_store!`. Each backend supplies `begin_write()` (Postgres: a transaction holding the
//! ledger's advisory lock; SQLite: BEGIN IMMEDIATE, its one-writer lock), `stage_in()` (outbox
//! insert), `wake_relay()`, its connection type and its consumer-offset helpers.

macro_rules! sql_store {
    ($store:ty, $conn:ty, $consumer:ident) => {
        use chrono::{DateTime, Utc};
        use referral_common::{consumer::$consumer as offsets, ids};
        use referral_proto::{
            common::v1::PartyKind,
            incentive::v1::RewardProgram,
        };

        use referral_common::audit::AuditEntry;

        use crate::{
            domain::{
                Program,
                program::{self, kind_name},
                rewards::{Conversion, PastConversion},
                states::State,
            },
            store::events,
            store::{
                Advanced, CampaignRow, ConversionRow, Decision, EntryRow, EntryStateRow, PayoutOutcome,
                PayoutRow, PastWindow, PayoutView, PersonLedger, Rekeyed, Standing, Store, StoreError,
                StoreResult,
            },
        };

        /// Entries with their current state.
        const ENTRY_SELECT: &str = concat!(
            "SELECT e.id, e.referrer_id, e.referrer_kind, e.kind, e.amount_minor, e.currency, e.campaign_bonus_minor, ",
            "e.conversion_id, e.referee_id, e.program_id, e.campaign_id, e.milestone, e.badge, e.eligible_at, ",
            "e.expires_at, e.reason, e.created_at, c.state, c.payout_id FROM entries e JOIN entry_current c ON c.entry_id = e.id"
        );
        const CAMPAIGN_SELECT: &str = concat!(
            "SELECT c.id, c.name, c.starts_at, c.ends_at, c.multiplier, c.referrer_kind, c.cap_minor, c.cap_currency, c.created_at, ",
            // Split sums (domain::money): no overflow whatever bonuses are stored.
            "CAST(COALESCE((SELECT SUM(e.campaign_bonus_minor / 4294967296) FROM entries e WHERE e.campaign_id = c.id), 0) AS BIGINT) AS spent_hi, ",
            "CAST(COALESCE((SELECT SUM(e.campaign_bonus_minor % 4294967296) FROM entries e WHERE e.campaign_id = c.id), 0) AS BIGINT) AS spent_lo ",
            "FROM campaigns c"
        );
        /// A conversion `c` counts as a successful referral unless fraud rejected it or its signup.
        const NOT_REJECTED: &str = "NOT EXISTS (SELECT 1 FROM decisions d WHERE d.action = 'REJECT' AND \
             (d.subject_id = c.conversion_id OR (d.subject_type = 'SIGNUP' AND d.referee_id = c.referee_id)))";

        fn decode_program(body: &str) -> StoreResult<RewardProgram> {
            serde_json::from_str(body).map_err(|e| StoreError::Encoding(e.to_string()))
        }

        fn encode_program(p: &RewardProgram) -> StoreResult<String> {
            serde_json::to_string(p).map_err(|e| StoreError::Encoding(e.to_string()))
        }

        impl Store for $store {
            type Tx = Tx;

            fn outbox(&self) -> &Outbox {
                &self.outbox
            }

            async fn seed_programs(&self, programs: Vec<RewardProgram>) -> StoreResult<()> {
                let now = ids::now();
                for mut p in programs {
                    p.created_at = Some(ids::to_ts(now));
                    p.updated_at = Some(ids::to_ts(now));
                    sqlx::query(
                        "INSERT INTO programs (id, referrer_kind, active, body, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(&p.id)
                    .bind(kind_name(PartyKind::try_from(p.referrer_kind).unwrap_or(PartyKind::Supplier)))
                    .bind(p.active)
                    .bind(encode_program(&p)?)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                }
                Ok(())
            }

            async fn put_program(&self, mut p: RewardProgram, at: DateTime<Utc>, audit: &AuditEntry) -> StoreResult<RewardProgram> {
                // A write transaction from the start: SQLite cannot upgrade a reader under load.
                let mut tx = self.begin_write().await?;
                let existing: Option<(DateTime<Utc>, String)> =
                    sqlx::query_as("SELECT created_at, body FROM programs WHERE id = $1")
                        .bind(&p.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let (created, before) = match existing {
                    // The stored body is our own JSON; should it not parse, keep it as text.
                    Some((created, body)) => (
                        created,
                        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
                    ),
                    None => (at, serde_json::Value::Null),
                };
                p.created_at = Some(ids::to_ts(created));
                p.updated_at = Some(ids::to_ts(at));
                sqlx::query(
                    "INSERT INTO programs (id, referrer_kind, active, body, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (id) DO UPDATE SET referrer_kind = excluded.referrer_kind, active = excluded.active,
                        body = excluded.body, updated_at = excluded.updated_at",
                )
                .bind(&p.id)
                .bind(kind_name(PartyKind::try_from(p.referrer_kind).unwrap_or(PartyKind::Supplier)))
                .bind(p.active)
                .bind(encode_program(&p)?)
                .bind(created)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                let after = serde_json::to_value(&p).map_err(|e| StoreError::Encoding(e.to_string()))?;
                referral_common::audit::record(&mut *tx, &audit.clone().before(before).after(after)).await?;
                tx.commit().await?;
                Ok(p)
            }

            async fn get_program(&self, id: &str) -> StoreResult<Option<RewardProgram>> {
                let body: Option<String> = sqlx::query_scalar("SELECT body FROM programs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                body.as_deref().map(decode_program).transpose()
            }

            async fn list_programs(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<RewardProgram>> {
                let bodies: Vec<String> =
                    sqlx::query_scalar("SELECT body FROM programs WHERE id > $1 ORDER BY id LIMIT $2")
                        .bind(after.unwrap_or(""))
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                bodies.iter().map(|b| decode_program(b)).collect()
            }

            async fn active_program(&self, kind: &str) -> StoreResult<Option<Program>> {
                let mut tx = self.pool.begin().await?;
                let p = Self::program_for(&mut tx, kind).await?;
                tx.rollback().await?;
                Ok(p)
            }

            async fn create_campaign(&self, row: CampaignRow, audit: &AuditEntry) -> StoreResult<CampaignRow> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO campaigns (id, name, starts_at, ends_at, multiplier, referrer_kind, cap_minor, cap_currency, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&row.id)
                .bind(&row.name)
                .bind(row.starts_at)
                .bind(row.ends_at)
                .bind(row.multiplier)
                .bind(&row.referrer_kind)
                .bind(row.cap_minor)
                .bind(&row.cap_currency)
                .bind(row.created_at)
                .execute(&mut *tx)
                .await?;
                let after = serde_json::json!({
                    "id": row.id,
                    "name": row.name,
                    "startsAt": row.starts_at,
                    "endsAt": row.ends_at,
                    "multiplier": row.multiplier,
                    "referrerKind": row.referrer_kind,
                    "budgetCap": row.cap_minor.map(|m| serde_json::json!({
                        "amountMinor": m.to_string(),
                        "currency": row.cap_currency,
                    })),
                });
                referral_common::audit::record(&mut *tx, &audit.clone().after(after)).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn list_campaigns(
                &self,
                active: Option<bool>,
                now: DateTime<Utc>,
                after: Option<&str>,
                limit: i64,
            ) -> StoreResult<Vec<CampaignRow>> {
                let filter = match active {
                    None => "",
                    Some(true) => " AND c.starts_at <= $3 AND c.ends_at > $3",
                    Some(false) => " AND NOT (c.starts_at <= $3 AND c.ends_at > $3)",
                };
                let sql = format!("{CAMPAIGN_SELECT} WHERE c.id > $1{filter} ORDER BY c.id LIMIT $2");
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(after.unwrap_or(""))
                    .bind(limit)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn begin_ledger(&self) -> StoreResult<Tx> {
                Ok(self.begin_write().await?)
            }

            async fn commit(&self, tx: Tx, staged: bool) -> StoreResult<()> {
                tx.commit().await?;
                if staged {
                    self.wake_relay();
                }
                Ok(())
            }

            async fn stage(&self, tx: &mut Tx, event: &Event) -> StoreResult<()> {
                Ok(Self::stage_in(tx, event).await?)
            }

            async fn audit(&self, tx: &mut Tx, entry: &AuditEntry) -> StoreResult<()> {
                referral_common::audit::record(&mut **tx, entry).await?;
                Ok(())
            }

            async fn mark_consumed(&self, tx: &mut Tx, event_id: &str) -> StoreResult<bool> {
                Ok(offsets::first_time(tx, event_id).await?)
            }

            async fn save_offset(&self, tx: &mut Tx, source: &str, offset: i64) -> StoreResult<()> {
                Ok(offsets::save_offset(tx, source, offset).await?)
            }

            async fn record_conversion(&self, tx: &mut Tx, conv: &Conversion) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO conversions (conversion_id, referee_id, referrer_id, referrer_kind, referee_kind, amount_minor, currency, occurred_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (conversion_id) DO NOTHING",
                )
                .bind(&conv.conversion_id)
                .bind(&conv.referee_id)
                .bind(&conv.referrer_id)
                .bind(kind_name(conv.referrer_kind))
                .bind(kind_name(conv.referee_kind))
                .bind(conv.value_minor)
                .bind(&conv.currency)
                .bind(conv.at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn entry_by_key(&self, tx: &mut Tx, dedupe_key: &str) -> StoreResult<Option<String>> {
                Ok(sqlx::query_scalar("SELECT id FROM entries WHERE dedupe_key = $1")
                    .bind(dedupe_key)
                    .fetch_optional(&mut **tx)
                    .await?)
            }

            async fn known_actions(&self, tx: &mut Tx, conversion_id: &str, referee_id: &str) -> StoreResult<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT action FROM decisions WHERE subject_id = $1 OR (subject_type = 'SIGNUP' AND referee_id = $2)",
                )
                .bind(conversion_id)
                .bind(referee_id)
                .fetch_all(&mut **tx)
                .await?)
            }

            async fn active_program_in(&self, tx: &mut Tx, kind: &str) -> StoreResult<Option<Program>> {
                Self::program_for(tx, kind).await
            }

            async fn successful_referrals(&self, tx: &mut Tx, referrer_id: &str, except: &str) -> StoreResult<i32> {
                Self::successful_on(&mut **tx, referrer_id, except).await
            }

            async fn booked_milestones(&self, tx: &mut Tx, referrer_id: &str) -> StoreResult<Vec<i32>> {
                Ok(sqlx::query_scalar(
                    "SELECT milestone FROM entries WHERE referrer_id = $1 AND kind = 'MILESTONE_REWARD'",
                )
                .bind(referrer_id)
                .fetch_all(&mut **tx)
                .await?)
            }

            async fn campaigns_at(&self, tx: &mut Tx, at: DateTime<Utc>) -> StoreResult<Vec<CampaignRow>> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{CAMPAIGN_SELECT} WHERE c.starts_at <= $1 AND c.ends_at > $1 ORDER BY c.id"
                )))
                .bind(at)
                .fetch_all(&mut **tx)
                .await?)
            }

            async fn insert_entry(&self, tx: &mut Tx, e: &EntryRow, dedupe_key: &str) -> StoreResult<bool> {
                let inserted = sqlx::query(
                    "INSERT INTO entries (id, dedupe_key, referrer_id, referrer_kind, kind, amount_minor, currency, campaign_bonus_minor,
                        conversion_id, referee_id, program_id, campaign_id, milestone, badge, eligible_at, expires_at, reason, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
                     ON CONFLICT (dedupe_key) DO NOTHING",
                )
                .bind(&e.id)
                .bind(dedupe_key)
                .bind(&e.referrer_id)
                .bind(&e.referrer_kind)
                .bind(&e.kind)
                .bind(e.amount_minor)
                .bind(&e.currency)
                .bind(e.campaign_bonus_minor)
                .bind(&e.conversion_id)
                .bind(&e.referee_id)
                .bind(&e.program_id)
                .bind(&e.campaign_id)
                .bind(e.milestone)
                .bind(&e.badge)
                .bind(e.eligible_at)
                .bind(e.expires_at)
                .bind(&e.reason)
                .bind(e.created_at)
                .execute(&mut **tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("INSERT INTO entry_states (entry_id, state, payout_id, reason, at) VALUES ($1, $2, '', $3, $4)")
                    .bind(&e.id)
                    .bind(&e.state)
                    .bind(&e.reason)
                    .bind(e.created_at)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO entry_current (entry_id, referrer_id, state, payout_id, eligible_at, expires_at)
                     VALUES ($1, $2, $3, '', $4, $5)",
                )
                .bind(&e.id)
                .bind(&e.referrer_id)
                .bind(&e.state)
                .bind(e.eligible_at)
                .bind(e.expires_at)
                .execute(&mut **tx)
                .await?;
                Ok(true)
            }

            async fn transition(
                &self,
                tx: &mut Tx,
                e: &mut EntryRow,
                to: State,
                payout_id: &str,
                reason: &str,
                at: DateTime<Utc>,
            ) -> StoreResult<()> {
                sqlx::query("INSERT INTO entry_states (entry_id, state, payout_id, reason, at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&e.id)
                    .bind(to.as_str())
                    .bind(payout_id)
                    .bind(reason)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE entry_current SET state = $2, payout_id = $3 WHERE entry_id = $1")
                    .bind(&e.id)
                    .bind(to.as_str())
                    .bind(payout_id)
                    .execute(&mut **tx)
                    .await?;
                e.state = to.as_str().to_string();
                e.payout_id = payout_id.to_string();
                e.reason = reason.to_string();
                Ok(())
            }

            async fn tier(&self, tx: &mut Tx, referrer_id: &str) -> StoreResult<Option<String>> {
                let badges = Self::badges_on(&mut **tx, referrer_id).await?;
                Ok(crate::store::convert::tier_name(&badges))
            }

            async fn referee_of_conversion(&self, tx: &mut Tx, conversion_id: &str) -> StoreResult<Option<String>> {
                Ok(sqlx::query_scalar("SELECT referee_id FROM conversions WHERE conversion_id = $1")
                    .bind(conversion_id)
                    .fetch_optional(&mut **tx)
                    .await?)
            }

            async fn referee_of_decision(&self, tx: &mut Tx, subject_id: &str) -> StoreResult<Option<String>> {
                Ok(sqlx::query_scalar("SELECT referee_id FROM decisions WHERE subject_id = $1")
                    .bind(subject_id)
                    .fetch_optional(&mut **tx)
                    .await?)
            }

            async fn record_decision(&self, tx: &mut Tx, d: &Decision, referee_id: &str) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO decisions (subject_id, subject_type, referee_id, action, decided_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (subject_id) DO UPDATE SET action = excluded.action, decided_at = excluded.decided_at,
                        referee_id = CASE WHEN excluded.referee_id = '' THEN decisions.referee_id ELSE excluded.referee_id END",
                )
                .bind(&d.subject_id)
                .bind(&d.subject_type)
                .bind(referee_id)
                .bind(d.action.as_str_name())
                .bind(d.at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn rewards_of_conversion(&self, tx: &mut Tx, conversion_id: &str) -> StoreResult<Vec<EntryRow>> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{ENTRY_SELECT} WHERE e.conversion_id = $1 AND e.kind IN ('CONVERSION_REWARD', 'REFEREE_REWARD') ORDER BY e.id"
                )))
                .bind(conversion_id)
                .fetch_all(&mut **tx)
                .await?)
            }

            async fn rewards_of_referee(&self, tx: &mut Tx, referee_id: &str) -> StoreResult<Vec<EntryRow>> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{ENTRY_SELECT} WHERE e.referee_id = $1 AND e.kind IN ('CONVERSION_REWARD', 'REFEREE_REWARD') ORDER BY e.id"
                )))
                .bind(referee_id)
                .fetch_all(&mut **tx)
                .await?)
            }

            async fn last_offset(&self, source: &str) -> StoreResult<i64> {
                let mut conn = self.pool.acquire().await?;
                Ok(offsets::load_offset(&mut conn, source).await?)
            }

            async fn advance(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Advanced> {
                let mut done = Advanced::default();
                let mut tx = self.begin_write().await?;
                let due: Vec<EntryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{ENTRY_SELECT} WHERE c.state = 'PENDING' AND c.eligible_at <= $1 ORDER BY c.eligible_at, e.id LIMIT $2"
                )))
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                for mut e in due {
                    self.transition(&mut tx, &mut e, State::Eligible, "", "hold period over", now).await?;
                    let tier = self.tier(&mut tx, &e.referrer_id).await?;
                    Self::stage_in(&mut tx, &events::reward_eligible(&e, tier.as_deref(), now)).await?;
                    done.eligible += 1;
                }
                // Clawbacks (negative) never expire: they are owed until recovered.
                let expiring: Vec<EntryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{ENTRY_SELECT} WHERE c.state IN ('PENDING', 'ELIGIBLE') AND c.expires_at <= $1 AND e.amount_minor > 0
                     ORDER BY c.expires_at, e.id LIMIT $2"
                )))
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                for mut e in expiring {
                    self.transition(&mut tx, &mut e, State::Expired, "", "unclaimed past its expiry", now).await?;
                    let tier = self.tier(&mut tx, &e.referrer_id).await?;
                    Self::stage_in(&mut tx, &events::reward_expired(&e, tier.as_deref(), now)).await?;
                    done.expired += 1;
                }
                tx.commit().await?;
                if done.eligible + done.expired > 0 {
                    self.wake_relay();
                }
                Ok(done)
            }

            async fn create_payout(&self, referrer_id: &str, at: DateTime<Utc>, audit: &AuditEntry) -> StoreResult<PayoutOutcome> {
                let mut tx = self.begin_write().await?;
                let eligible: Vec<EntryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{ENTRY_SELECT} WHERE e.referrer_id = $1 AND c.state = 'ELIGIBLE' ORDER BY e.id"
                )))
                .bind(referrer_id)
                .fetch_all(&mut *tx)
                .await?;
                // One currency per payout: the oldest eligible entry's (others wait for the next).
                let Some(currency) = eligible.first().map(|e| e.currency.clone()) else {
                    return Ok(PayoutOutcome::NothingToPay);
                };
                let mut paying: Vec<EntryRow> = eligible.into_iter().filter(|e| e.currency == currency).collect();
                let amount = crate::domain::money::amount(
                    "the eligible balance",
                    crate::domain::money::sum(paying.iter().map(|e| e.amount_minor)),
                )?;
                if amount <= 0 {
                    return Ok(PayoutOutcome::NothingToPay);
                }
                let payout = PayoutRow {
                    id: ids::new_id(),
                    referrer_id: referrer_id.to_string(),
                    amount_minor: amount,
                    currency,
                    status: "PAID".into(),
                    created_at: at,
                };
                sqlx::query(
                    "INSERT INTO payouts (id, referrer_id, amount_minor, currency, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&payout.id)
                .bind(&payout.referrer_id)
                .bind(payout.amount_minor)
                .bind(&payout.currency)
                .bind(&payout.status)
                .bind(payout.created_at)
                .execute(&mut *tx)
                .await?;
                for e in paying.iter_mut() {
                    self.transition(&mut tx, e, State::Paid, &payout.id, "paid out", at).await?;
                }
                let view = PayoutView {
                    entries: paying.iter().map(|e| e.id.clone()).collect(),
                    payout,
                };
                Self::stage_in(&mut tx, &events::payout_paid(&view)).await?;
                let mut entry = audit.clone().after(serde_json::json!({
                    "id": view.payout.id,
                    "referrerId": view.payout.referrer_id,
                    "amount": {"amountMinor": view.payout.amount_minor.to_string(), "currency": view.payout.currency},
                    "status": view.payout.status,
                    "entries": view.entries,
                }));
                entry.subject_id = view.payout.id.clone();
                referral_common::audit::record(&mut *tx, &entry).await?;
                tx.commit().await?;
                self.wake_relay();
                Ok(PayoutOutcome::Paid(view))
            }

            async fn get_payout(&self, id: &str) -> StoreResult<Option<PayoutView>> {
                let payout: Option<PayoutRow> = sqlx::query_as(
                    "SELECT id, referrer_id, amount_minor, currency, status, created_at FROM payouts WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(payout) = payout else { return Ok(None) };
                let entries: Vec<String> = sqlx::query_scalar(
                    "SELECT entry_id FROM entry_states WHERE payout_id = $1 AND state = 'PAID' ORDER BY entry_id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(Some(PayoutView { payout, entries }))
            }

            async fn standing(&self, referrer_id: &str) -> StoreResult<Standing> {
                let mut conn = self.pool.acquire().await?;
                let newest: Option<(String, String)> = sqlx::query_as(
                    "SELECT currency, referrer_kind FROM entries WHERE referrer_id = $1 ORDER BY id DESC LIMIT 1",
                )
                .bind(referrer_id)
                .fetch_optional(&mut *conn)
                .await?;
                let mut s = Standing::default();
                if let Some((currency, kind)) = newest {
                    s.currency = currency;
                    s.referrer_kind = Some(kind);
                }
                // Split sums joined in i128 (domain::money): no overflow whatever is stored.
                let sums: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT c.state, CAST(SUM(e.amount_minor / 4294967296) AS BIGINT), CAST(SUM(e.amount_minor % 4294967296) AS BIGINT)
                     FROM entries e JOIN entry_current c ON c.entry_id = e.id
                     WHERE e.referrer_id = $1 AND e.currency = $2 GROUP BY c.state",
                )
                .bind(referrer_id)
                .bind(&s.currency)
                .fetch_all(&mut *conn)
                .await?;
                let (mut pending, mut eligible, mut paid) = (0i128, 0i128, 0i128);
                for (state, hi, lo) in sums {
                    let sum = crate::domain::money::join(hi, lo);
                    match State::parse(&state) {
                        Some(State::Pending | State::Held) => pending += sum,
                        Some(State::Eligible) => eligible += sum,
                        Some(State::Paid) => paid += sum,
                        _ => {}
                    }
                }
                s.pending_minor = crate::domain::money::amount("the pending balance", pending)?;
                s.eligible_minor = crate::domain::money::amount("the eligible balance", eligible)?;
                s.paid_minor = crate::domain::money::amount("the paid balance", paid)?;
                s.badges = Self::badges_on(&mut conn, referrer_id).await?;
                s.successful_referrals = Self::successful_on(&mut conn, referrer_id, "").await?;
                Ok(s)
            }

            async fn entries(&self, referrer_id: &str, after: Option<&str>, limit: i64) -> StoreResult<Vec<EntryRow>> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{ENTRY_SELECT} WHERE e.referrer_id = $1 AND e.id > $2 ORDER BY e.id LIMIT $3"
                )))
                .bind(referrer_id)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn person_ledger(&self, person_id: &str, limit: i64) -> StoreResult<PersonLedger> {
                let mut conn = self.pool.acquire().await?;
                let entries: Vec<EntryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{ENTRY_SELECT} WHERE e.referrer_id = $1 OR e.referee_id = $1 ORDER BY e.id LIMIT $2"
                )))
                .bind(person_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
                let states: Vec<EntryStateRow> = sqlx::query_as(
                    "SELECT s.entry_id, s.state, s.payout_id, s.reason, s.at FROM entry_states s
                     JOIN entries e ON e.id = s.entry_id
                     WHERE e.referrer_id = $1 OR e.referee_id = $1 ORDER BY s.entry_id, s.seq LIMIT $2",
                )
                .bind(person_id)
                .bind(limit.saturating_mul(4))
                .fetch_all(&mut *conn)
                .await?;
                let payouts: Vec<PayoutRow> = sqlx::query_as(
                    "SELECT id, referrer_id, amount_minor, currency, status, created_at FROM payouts
                     WHERE referrer_id = $1 ORDER BY id LIMIT $2",
                )
                .bind(person_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
                let mut views = Vec::with_capacity(payouts.len());
                for payout in payouts {
                    let entries: Vec<String> = sqlx::query_scalar(
                        "SELECT entry_id FROM entry_states WHERE payout_id = $1 AND state = 'PAID' ORDER BY entry_id",
                    )
                    .bind(&payout.id)
                    .fetch_all(&mut *conn)
                    .await?;
                    views.push(PayoutView { payout, entries });
                }
                let conversions: Vec<ConversionRow> = sqlx::query_as(
                    "SELECT conversion_id, referee_id, referrer_id, referrer_kind, referee_kind, amount_minor, currency, occurred_at
                     FROM conversions WHERE referee_id = $1 OR referrer_id = $1 ORDER BY occurred_at, conversion_id LIMIT $2",
                )
                .bind(person_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
                Ok(PersonLedger { entries, states, payouts: views, conversions })
            }

            async fn rekey_person(&self, person_id: &str, pseudonym: &str) -> StoreResult<Rekeyed> {
                // The ledger's write lock: no booking interleaves, so a conversion of this
                // person is either re-keyed here or booked after under the id it arrives with.
                let mut tx = self.begin_write().await?;
                let mut done = Rekeyed::default();
                let named: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, dedupe_key FROM entries WHERE referrer_id = $1 OR referee_id = $1 ORDER BY id",
                )
                .bind(person_id)
                .fetch_all(&mut *tx)
                .await?;
                for (id, key) in &named {
                    let key = crate::domain::rewards::rekey_dedupe(key, person_id, pseudonym).unwrap_or_else(|| key.clone());
                    sqlx::query(
                        "UPDATE entries SET dedupe_key = $2,
                            referrer_id = CASE WHEN referrer_id = $3 THEN $4 ELSE referrer_id END,
                            referee_id = CASE WHEN referee_id = $3 THEN $4 ELSE referee_id END
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&key)
                    .bind(person_id)
                    .bind(pseudonym)
                    .execute(&mut *tx)
                    .await?;
                }
                done.entries = named.len() as i64;
                sqlx::query("UPDATE entry_current SET referrer_id = $2 WHERE referrer_id = $1")
                    .bind(person_id)
                    .bind(pseudonym)
                    .execute(&mut *tx)
                    .await?;
                done.payouts = sqlx::query("UPDATE payouts SET referrer_id = $2 WHERE referrer_id = $1")
                    .bind(person_id)
                    .bind(pseudonym)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64;
                done.conversions = sqlx::query(
                    "UPDATE conversions SET
                        referrer_id = CASE WHEN referrer_id = $1 THEN $2 ELSE referrer_id END,
                        referee_id = CASE WHEN referee_id = $1 THEN $2 ELSE referee_id END
                     WHERE referrer_id = $1 OR referee_id = $1",
                )
                .bind(person_id)
                .bind(pseudonym)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
                done.decisions = sqlx::query("UPDATE decisions SET referee_id = $2 WHERE referee_id = $1")
                    .bind(person_id)
                    .bind(pseudonym)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64;
                tx.commit().await?;
                Ok(done)
            }

            async fn past_conversions(
                &self,
                kind: &str,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
                limit: i64,
            ) -> StoreResult<PastWindow> {
                let rows: Vec<(String, i64, String, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT c.referrer_id, c.amount_minor, c.currency, NOT ({NOT_REJECTED}) FROM conversions c
                     WHERE c.referrer_kind = $1 AND c.occurred_at >= $2 AND c.occurred_at < $3
                     ORDER BY c.occurred_at, c.conversion_id LIMIT $4"
                )))
                .bind(kind)
                .bind(from)
                .bind(to)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let prior: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT c.referrer_id, COUNT(*) FROM conversions c
                     WHERE c.referrer_kind = $1 AND c.occurred_at < $2 AND {NOT_REJECTED} GROUP BY c.referrer_id"
                )))
                .bind(kind)
                .bind(from)
                .fetch_all(&self.pool)
                .await?;
                let past = rows
                    .into_iter()
                    .map(|(referrer_id, value_minor, currency, rejected)| PastConversion {
                        referrer_id,
                        value_minor,
                        currency,
                        rejected,
                    })
                    .collect();
                Ok((past, prior))
            }
        }

        impl $store {

            /// The program new rewards of `kind` are booked under: the active one most recently
            /// written.
            async fn program_for(tx: &mut Tx, kind: &str) -> StoreResult<Option<Program>> {
                let bodies: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, body FROM programs WHERE referrer_kind = $1 AND active ORDER BY updated_at DESC, id LIMIT 5",
                )
                .bind(kind)
                .fetch_all(&mut **tx)
                .await?;
                for (id, body) in bodies {
                    match program::validate(&id, &decode_program(&body)?) {
                        Ok(p) => return Ok(Some(p)),
                        Err(v) => tracing::warn!(program = %id, problems = %v.summary(), "stored program no longer valid; skipped"),
                    }
                }
                Ok(None)
            }

            /// Converted, not rejected referrals of a referrer (leaving one conversion out).
            async fn successful_on(conn: &mut $conn, referrer_id: &str, except: &str) -> StoreResult<i32> {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM conversions c WHERE c.referrer_id = $1 AND c.conversion_id <> $2 AND {NOT_REJECTED}"
                )))
                .bind(referrer_id)
                .bind(except)
                .fetch_one(&mut *conn)
                .await?;
                Ok(i32::try_from(n).unwrap_or(i32::MAX))
            }

            async fn badges_on(conn: &mut $conn, referrer_id: &str) -> StoreResult<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT badge FROM entries WHERE referrer_id = $1 AND kind = 'MILESTONE_REWARD' AND badge <> '' ORDER BY milestone",
                )
                .bind(referrer_id)
                .fetch_all(&mut *conn)
                .await?)
            }

        }
    };
}

pub(super) use sql_store;
