//! The SQL of analytics-svc, written once and instantiated for Postgres and SQLite by
//! `sql_store!`: the rollups (`Store`) and the webhooks (`webhooks::WebhookStore`). Each
//! backend supplies `begin_write()` (Postgres: a transaction holding the rollup advisory
//! lock; SQLite: BEGIN IMMEDIATE), `begin_webhook_write()` (Postgres: a plain transaction;
//! SQLite: BEGIN IMMEDIATE), its connection type, its consumer-offset helpers and how the
//! due-delivery claim skips rows another replica is claiming. Only portable SQL here
//! (upserts with ON CONFLICT, no GREATEST).

macro_rules! sql_store {
    ($store:ty, $conn:ty, $consumer:ident, $skip_locked:literal) => {
        use referral_common::consumer::$consumer as offsets;

        use crate::{
            domain::{
                attribution::{self, MODELS},
                day_of_secs,
                fx,
                rollup::{Change, ConversionFact, InvitationFact, STAGE_ACTIVATED, STAGE_CONVERTED, STAGE_SIGNED_UP, SignupFact},
                scope::{self, FIRST},
            },
            store::{
                ActivityKind, ApplySummary, CohortRows, Consumed, Credit, CreditKey, DaySums, FxRateRow, Ranking, ReferrerSums,
                RevenueRow, Store, StoreResult, Window,
                sql::{SUMS, SinceDeltas, dim_filters, ranking_sql},
            },
        };

        impl Store for $store {
            async fn apply_events(&self, source: &str, items: Vec<Consumed>, currency: &str) -> StoreResult<ApplySummary> {
                let mut summary = ApplySummary::default();
                let Some(last) = items.iter().map(|i| i.offset).max() else {
                    return Ok(summary);
                };
                let mut tx = self.begin_write().await?;
                // Nothing in a batch reads active_since: its changes are summed in memory and
                // written once at the end, a few multi-row upserts per batch.
                let mut since = SinceDeltas::new();
                for item in items {
                    if !offsets::first_time(&mut tx, &item.event_id).await? {
                        summary.duplicates += 1;
                        continue;
                    }
                    summary.applied += 1;
                    apply_change(&mut tx, &item.change, currency, &mut since).await?;
                }
                write_since(&mut tx, since).await?;
                offsets::save_offset(&mut tx, source, last).await?;
                tx.commit().await?;
                Ok(summary)
            }

            async fn last_offset(&self, source: &str) -> StoreResult<i64> {
                let mut conn = self.pool.acquire().await?;
                Ok(offsets::load_offset(&mut conn, source).await?)
            }

            async fn truncate_rollups(&self) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                for table in ROLLUP_TABLES {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn day_sums(&self, w: &Window) -> StoreResult<Vec<DaySums>> {
                let (dims, values) = dim_filters(w, 3);
                let sql = format!(
                    "SELECT day, flow, {SUMS} FROM daily WHERE day >= $1 AND day <= $2{dims} GROUP BY day, flow ORDER BY day, flow"
                );
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(w.from_day).bind(w.to_day);
                for v in values {
                    q = q.bind(v);
                }
                Ok(q.fetch_all(&self.pool).await?)
            }

            async fn referrer_day_sums(&self, referrer_id: &str, w: &Window) -> StoreResult<Vec<DaySums>> {
                let flow = if w.flow.is_some() { " AND flow = $4" } else { "" };
                let sums = SUMS
                    .replace("CAST(SUM(cycle_seconds) AS BIGINT)", "CAST(0 AS BIGINT)")
                    .replace("CAST(SUM(cycle_signups) AS BIGINT)", "CAST(0 AS BIGINT)");
                let sql = format!(
                    "SELECT day, flow, {sums} FROM referrer_days WHERE referrer_id = $1 AND day >= $2 AND day <= $3{flow}
                     GROUP BY day, flow ORDER BY day, flow"
                );
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(referrer_id).bind(w.from_day).bind(w.to_day);
                if let Some(f) = &w.flow {
                    q = q.bind(f);
                }
                Ok(q.fetch_all(&self.pool).await?)
            }

            async fn gap_rows(&self, scope: &str, from_day: i64, to_day: i64) -> StoreResult<Vec<(i64, i64, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT day, gap, referrers FROM active_gaps WHERE scope = $1 AND day >= $2 AND day <= $3 AND referrers <> 0",
                )
                .bind(scope)
                .bind(from_day)
                .bind(to_day)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn distinct_referrers(&self, scopes: &[String], from_day: i64, to_day: i64) -> StoreResult<Vec<(String, i64)>> {
                if scopes.is_empty() {
                    return Ok(vec![]);
                }
                let list: Vec<String> = (0..scopes.len()).map(|i| format!("${}", i + 3)).collect();
                // A referrer counts on its first active day inside the window: the day whose
                // gap to the previous one reaches back before `from`. Up to SINCE_DAYS days
                // active_since holds those counts per window start (one index range per
                // scope); longer windows filter the gap histograms.
                let sql = if scope::since_covers(from_day, to_day) {
                    format!(
                        "SELECT scope, CAST(SUM(referrers) AS BIGINT) FROM active_since
                         WHERE scope IN ({}) AND since_day = $1 AND day >= $1 AND day <= $2 GROUP BY scope",
                        list.join(", ")
                    )
                } else {
                    format!(
                        "SELECT scope, CAST(SUM(referrers) AS BIGINT) FROM active_gaps
                         WHERE scope IN ({}) AND day >= $1 AND day <= $2 AND gap > day - $1 GROUP BY scope",
                        list.join(", ")
                    )
                };
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(from_day).bind(to_day);
                for s in scopes {
                    q = q.bind(s);
                }
                Ok(q.fetch_all(&self.pool).await?)
            }

            async fn cohort_rows(&self, scope: &str, w: &Window) -> StoreResult<CohortRows> {
                let sizes = sqlx::query_as(
                    "SELECT first_day, CAST(COUNT(*) AS BIGINT) FROM referrer_firsts
                     WHERE scope = $1 AND first_day >= $2 AND first_day <= $3 GROUP BY first_day ORDER BY first_day",
                )
                .bind(scope)
                .bind(w.from_day)
                .bind(w.to_day)
                .fetch_all(&self.pool)
                .await?;
                let flow = if w.flow.is_some() { " AND d.flow = $4" } else { "" };
                let sql = format!(
                    "SELECT f.first_day, d.day, CAST(SUM(d.signups) AS BIGINT), CAST(SUM(d.conversions) AS BIGINT)
                     FROM referrer_firsts f JOIN referrer_days d ON d.referrer_id = f.referrer_id
                     WHERE f.scope = $1 AND f.first_day >= $2 AND f.first_day <= $3 AND d.day >= f.first_day AND d.day <= $3{flow}
                     GROUP BY f.first_day, d.day ORDER BY f.first_day, d.day"
                );
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(scope).bind(w.from_day).bind(w.to_day);
                if let Some(f) = &w.flow {
                    q = q.bind(f);
                }
                let outcomes = q.fetch_all(&self.pool).await?;
                Ok(CohortRows { sizes, outcomes })
            }

            async fn leaderboard(
                &self,
                kind: Option<&str>,
                vendor: Option<&str>,
                days: Option<(i64, i64)>,
                ranking: Ranking,
                min_invitations: i64,
                limit: i64,
            ) -> StoreResult<Vec<ReferrerSums>> {
                // Every parameter appears in both statements (Postgres types each one it is sent).
                let kind_filter = " AND ($4 = '' OR r.referrer_kind = $4) AND ($6 = '' OR r.vendor_type = $6)";
                let sql = match days {
                    None => format!(
                        "SELECT r.referrer_id, r.referrer_kind, r.tier, r.badges, r.invitations, r.signups, r.conversions,
                           r.revenue_minor, r.stage_sum, r.last_day, r.second_order_reach
                         FROM referrers r WHERE r.invitations >= $1 AND (r.invitations > 0 OR r.signups > 0) AND $2 = $3{kind_filter}
                         ORDER BY {} DESC, r.referrer_id LIMIT $5",
                        ranking_sql(ranking, "r.")
                    ),
                    Some(_) => format!(
                        "SELECT d.referrer_id, r.referrer_kind, r.tier, r.badges,
                           CAST(SUM(d.invitations) AS BIGINT) AS invitations, CAST(SUM(d.signups) AS BIGINT) AS signups,
                           CAST(SUM(d.conversions) AS BIGINT) AS conversions, CAST(SUM(d.revenue_minor) AS BIGINT) AS revenue_minor,
                           r.stage_sum, r.last_day, r.second_order_reach
                         FROM referrer_days d JOIN referrers r ON r.referrer_id = d.referrer_id
                         WHERE d.day >= $2 AND d.day <= $3{kind_filter}
                         GROUP BY d.referrer_id, r.referrer_kind, r.tier, r.badges, r.stage_sum, r.last_day, r.second_order_reach
                         HAVING SUM(d.invitations) >= $1 AND (SUM(d.invitations) > 0 OR SUM(d.signups) > 0)
                         ORDER BY {} DESC, d.referrer_id LIMIT $5",
                        ranking_sql(ranking, "SUM(d.")
                    ),
                };
                let (from, to) = days.unwrap_or((0, 0));
                let q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(min_invitations)
                    .bind(from)
                    .bind(to)
                    .bind(kind.unwrap_or(""))
                    .bind(limit)
                    .bind(vendor.unwrap_or(""));
                Ok(q.fetch_all(&self.pool).await?)
            }

            async fn revenue(&self, kind: Option<&str>, vendor: Option<&str>, days: Option<(i64, i64)>) -> StoreResult<Vec<RevenueRow>> {
                // Summed per referrer, currency and the rate effective on each day (one row per
                // rate period, not per day), in two halves that cannot overflow BIGINT.
                let rows: Vec<(String, String, String, String, String, i64, String, i64, i64)> = sqlx::query_as(
                    "SELECT referrer_id, referrer_kind, tier, badges, currency, rate_day, rate,
                       CAST(SUM(high) AS BIGINT), CAST(SUM(low) AS BIGINT)
                     FROM (
                       SELECT d.referrer_id, r.referrer_kind, r.tier, r.badges, d.currency,
                         COALESCE((SELECT MAX(f.effective_day) FROM fx_rates f
                                   WHERE f.currency = d.currency AND f.effective_day <= d.day), -1) AS rate_day,
                         COALESCE((SELECT f.rate FROM fx_rates f WHERE f.currency = d.currency AND f.effective_day <= d.day
                                   ORDER BY f.effective_day DESC LIMIT 1), '') AS rate,
                         d.revenue_minor / $5 AS high, d.revenue_minor % $5 AS low
                       FROM revenue_days d JOIN referrers r ON r.referrer_id = d.referrer_id
                       WHERE d.day >= $1 AND d.day <= $2 AND ($3 = '' OR r.referrer_kind = $3) AND ($4 = '' OR r.vendor_type = $4)
                     ) x
                     GROUP BY referrer_id, referrer_kind, tier, badges, currency, rate_day, rate
                     ORDER BY referrer_id, currency, rate_day",
                )
                .bind(days.map_or(i64::MIN, |d| d.0))
                .bind(days.map_or(i64::MAX, |d| d.1))
                .bind(kind.unwrap_or(""))
                .bind(vendor.unwrap_or(""))
                .bind(fx::SPLIT)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(referrer_id, referrer_kind, tier, badges, currency, rate_day, rate, high, low)| RevenueRow {
                        referrer_id,
                        referrer_kind,
                        tier,
                        badges,
                        currency,
                        rate: (rate_day >= 0).then_some((rate_day, rate)),
                        amount_minor: fx::recombine(high, low),
                    })
                    .collect())
            }

            async fn churned(&self, referrer_id: Option<&str>, w: &Window) -> StoreResult<i64> {
                let (dims, values) = dim_filters(w, 5);
                let sql = format!(
                    "SELECT CAST(COALESCE(SUM(churned), 0) AS BIGINT) FROM churn_days
                     WHERE day >= $1 AND day <= $2 AND churn_day <= $2 AND ($3 = 0 OR referrer_id = $4){dims}"
                );
                let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(w.from_day)
                    .bind(w.to_day)
                    .bind(i32::from(referrer_id.is_some()))
                    .bind(referrer_id.unwrap_or(""));
                for v in values {
                    q = q.bind(v);
                }
                Ok(q.fetch_one(&self.pool).await?)
            }

            async fn record_activity(&self, user_id: &str, kind: ActivityKind, at: i64) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let changed = activity(&mut tx, user_id, kind, at).await?;
                tx.commit().await?;
                Ok(changed)
            }

            async fn put_fx_rate(&self, rate: &FxRateRow, audit: &referral_common::audit::AuditEntry) -> StoreResult<FxRateRow> {
                let mut tx = self.begin_write().await?;
                let before: Option<FxRateRow> = sqlx::query_as(
                    "SELECT currency, effective_day, rate, updated_at FROM fx_rates WHERE currency = $1 AND effective_day = $2",
                )
                .bind(&rate.currency)
                .bind(rate.effective_day)
                .fetch_optional(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO fx_rates (currency, effective_day, rate, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (currency, effective_day) DO UPDATE SET rate = excluded.rate, updated_at = excluded.updated_at",
                )
                .bind(&rate.currency)
                .bind(rate.effective_day)
                .bind(&rate.rate)
                .bind(rate.updated_at)
                .execute(&mut *tx)
                .await?;
                let mut entry = audit.clone().after(super::sql::fx_audit_view(rate));
                if let Some(b) = &before {
                    entry = entry.before(super::sql::fx_audit_view(b));
                }
                referral_common::audit::record(&mut *tx, &entry).await?;
                tx.commit().await?;
                Ok(rate.clone())
            }

            async fn list_fx_rates(&self, currency: Option<&str>, after: Option<(String, i64)>, limit: i64) -> StoreResult<Vec<FxRateRow>> {
                let (after_currency, after_day) = after.unwrap_or((String::new(), i64::MIN));
                Ok(sqlx::query_as(
                    "SELECT currency, effective_day, rate, updated_at FROM fx_rates
                     WHERE ($1 = '' OR currency = $1) AND (currency > $2 OR (currency = $2 AND effective_day > $3))
                     ORDER BY currency, effective_day LIMIT $4",
                )
                .bind(currency.unwrap_or(""))
                .bind(after_currency)
                .bind(after_day)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn connectors(&self, min_connections: i64) -> StoreResult<Vec<ReferrerSums>> {
                Ok(sqlx::query_as(
                    "SELECT referrer_id, referrer_kind, tier, badges, invitations, signups, conversions, revenue_minor,
                       stage_sum, last_day, second_order_reach
                     FROM referrers WHERE invitations >= $1",
                )
                .bind(min_connections)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn credits(&self, model: &str, by: CreditKey, w: &Window) -> StoreResult<Vec<Credit>> {
                let key = match by {
                    CreditKey::Referrer => "referrer_id",
                    CreditKey::Channel => "channel",
                };
                let (dims, values) = dim_filters(w, 4);
                let sql = format!(
                    "SELECT {key} AS key, currency, CAST(SUM(revenue_minor) AS BIGINT) AS revenue_minor, SUM(conversions) AS conversions
                     FROM attribution_days WHERE model = $1 AND day >= $2 AND day <= $3{dims}
                     GROUP BY {key}, currency HAVING SUM(credits) > 0
                     ORDER BY revenue_minor DESC, key, currency"
                );
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(model).bind(w.from_day).bind(w.to_day);
                for v in values {
                    q = q.bind(v);
                }
                Ok(q.fetch_all(&self.pool).await?)
            }

            async fn experiment(&self, template_id: &str, w: &Window) -> StoreResult<Vec<(String, i64, i64)>> {
                let (dims, values) = dim_filters(w, 4);
                let sql = format!(
                    "SELECT variant, CAST(SUM(sent) AS BIGINT), CAST(SUM(signups) AS BIGINT) FROM experiment_cohorts
                     WHERE template_id = $1 AND day >= $2 AND day <= $3{dims} GROUP BY variant ORDER BY variant"
                );
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(template_id).bind(w.from_day).bind(w.to_day);
                for v in values {
                    q = q.bind(v);
                }
                Ok(q.fetch_all(&self.pool).await?)
            }
        }

        /// Every table `rebuild` empties: rollups, write-side rows, offsets, applied ids.
        const ROLLUP_TABLES: [&str; 18] = [
            "invitation_facts",
            "referred_users",
            "referrers",
            "daily",
            "referrer_days",
            "active_days",
            "active_gaps",
            "active_since",
            "referrer_firsts",
            "experiment_cohorts",
            "attribution_days",
            "conversion_facts",
            "conversion_credits",
            "rejected_signups",
            "revenue_days",
            "churn_days",
            "consumer_offsets",
            "processed_events",
        ];

        /// An invitation's cohort: its creation day and dimensions.
        #[derive(Debug, Clone, sqlx::FromRow)]
        struct Cohort {
            day: i64,
            flow: String,
            referrer_id: String,
            referrer_kind: String,
            vendor_type: String,
            channel: String,
            template_id: String,
            template_variant: String,
        }

        /// Additions to one rollup row (negative to take back).
        #[derive(Debug, Default, Clone)]
        struct Delta {
            invitations: i64,
            /// SENT .. ACTIVATED.
            stages: [i64; 7],
            signups: i64,
            conversions: i64,
            revenue_minor: i64,
            cycle_seconds: i64,
            cycle_signups: i64,
        }

        impl Delta {
            /// In the order of `COUNTERS`.
            fn values(&self) -> [i64; 13] {
                let s = self.stages;
                [
                    self.invitations, s[0], s[1], s[2], s[3], s[4], s[5], s[6], self.signups, self.conversions,
                    self.revenue_minor, self.cycle_seconds, self.cycle_signups,
                ]
            }
        }

        async fn apply_change(conn: &mut $conn, change: &Change, currency: &str, since: &mut SinceDeltas) -> sqlx::Result<()> {
            match change {
                Change::Invitation(f) => invitation(conn, f, since).await,
                Change::Stage { invitation_id, stage } => raise_stage(conn, invitation_id, *stage).await,
                Change::Signup(s) => signup(conn, s).await,
                Change::Conversion(c) => conversion(conn, c, currency).await,
                Change::Badge { referrer_id, badge } => award_badge(conn, referrer_id, badge).await,
                Change::RejectSignup { signup_id } => reject_signup(conn, signup_id).await,
                Change::RejectConversion { conversion_id } => reject_conversion(conn, conversion_id).await,
                Change::Nothing => Ok(()),
            }
        }

        async fn invitation(conn: &mut $conn, f: &InvitationFact, since: &mut SinceDeltas) -> sqlx::Result<()> {
            let day = day_of_secs(f.created_at);
            let inserted = sqlx::query(
                "INSERT INTO invitation_facts (invitation_id, day, created_at, flow, referrer_id, referrer_kind, vendor_type, channel, template_id, template_variant, stage)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0) ON CONFLICT (invitation_id) DO NOTHING",
            )
            .bind(&f.invitation_id)
            .bind(day)
            .bind(f.created_at)
            .bind(&f.flow)
            .bind(&f.referrer_id)
            .bind(&f.referrer_kind)
            .bind(&f.vendor_type)
            .bind(&f.channel)
            .bind(&f.template_id)
            .bind(&f.template_variant)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(());
            }
            let cohort = Cohort {
                day,
                flow: f.flow.clone(),
                referrer_id: f.referrer_id.clone(),
                referrer_kind: f.referrer_kind.clone(),
                vendor_type: f.vendor_type.clone(),
                channel: f.channel.clone(),
                template_id: f.template_id.clone(),
                template_variant: f.template_variant.clone(),
            };
            let delta = Delta {
                invitations: 1,
                ..Delta::default()
            };
            bump_cohort(conn, &cohort, &delta).await?;
            bump_referrer(conn, &cohort, &delta, 0).await?;
            for s in scope::scopes_of(&f.flow, &f.referrer_kind, &f.vendor_type) {
                mark_active(conn, &s, &f.referrer_id, day, since).await?;
            }
            Ok(())
        }

        /// The columns of [`Cohort`].
        const COHORT_COLS: &str = "day, flow, referrer_id, referrer_kind, vendor_type, channel, template_id, template_variant";

        #[derive(sqlx::FromRow)]
        struct InvitationRow {
            #[sqlx(flatten)]
            cohort: Cohort,
            stage: i32,
            created_at: i64,
            /// 1 once its conversion was rejected: it goes no further than SIGNED_UP.
            conversion_rejected: i32,
            /// The day its ACTIVATED referee churned, once counted.
            churn_day: Option<i64>,
        }

        #[derive(sqlx::FromRow)]
        struct ReferredRow {
            #[sqlx(flatten)]
            cohort: Cohort,
            user_id: String,
            invitation_id: String,
            cycle_seconds: Option<i64>,
            converted: i32,
            rejected: i32,
        }

        async fn invitation_row(conn: &mut $conn, invitation_id: &str) -> sqlx::Result<Option<InvitationRow>> {
            let sql = format!(
                "SELECT {COHORT_COLS}, stage, created_at, conversion_rejected, churn_day FROM invitation_facts WHERE invitation_id = $1"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(invitation_id).fetch_optional(&mut *conn).await
        }

        /// The referral of a user (by user id, or by signup id).
        async fn referred(conn: &mut $conn, key_col: &str, key: &str) -> sqlx::Result<Option<ReferredRow>> {
            let sql = format!(
                "SELECT {COHORT_COLS}, user_id, invitation_id, cycle_seconds, converted, rejected FROM referred_users WHERE {key_col} = $1"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key).fetch_optional(&mut *conn).await
        }

        /// Moves an invitation forward to `stage`, counting every stage it passed once.
        /// ACTIVATED waits for CONVERTED; CONVERTED goes on to ACTIVATED (and counts the
        /// churn) when its referee's activity was reported first.
        async fn raise_stage(conn: &mut $conn, invitation_id: &str, stage: i32) -> sqlx::Result<()> {
            let Some(InvitationRow { cohort, stage: current, conversion_rejected, churn_day, .. }) =
                invitation_row(conn, invitation_id).await?
            else {
                return Ok(());
            };
            let mut stage = if conversion_rejected == 1 { stage.min(STAGE_SIGNED_UP) } else { stage };
            if stage == STAGE_ACTIVATED && current < STAGE_CONVERTED {
                return Ok(()); // counted when it converts
            }
            let referee = if stage >= STAGE_CONVERTED { referee_activity(conn, invitation_id).await? } else { None };
            if stage == STAGE_CONVERTED && referee.is_some_and(|(activated, _)| activated.is_some()) {
                stage = STAGE_ACTIVATED;
            }
            if stage <= current {
                return Ok(());
            }
            sqlx::query("UPDATE invitation_facts SET stage = $2 WHERE invitation_id = $1")
                .bind(invitation_id)
                .bind(stage)
                .execute(&mut *conn)
                .await?;
            let mut delta = Delta::default();
            for s in current + 1..=stage {
                delta.stages[(s - 1) as usize] = 1;
            }
            bump_cohort(conn, &cohort, &delta).await?;
            // Connection strength counts SENT .. CONVERTED, as before activity existed.
            let strength = stage.min(STAGE_CONVERTED) - current.min(STAGE_CONVERTED);
            bump_referrer(conn, &cohort, &Delta::default(), i64::from(strength)).await?;
            if current < 1 && !cohort.template_id.is_empty() {
                bump_experiment(conn, &cohort, 1, 0).await?;
            }
            if stage == STAGE_ACTIVATED
                && churn_day.is_none()
                && let Some(churned_at) = referee.and_then(|(_, churned)| churned)
            {
                count_churn(conn, invitation_id, &cohort, Some(day_of_secs(churned_at))).await?;
            }
            Ok(())
        }

        /// The (activated, churned) instants of the user who came through the invitation.
        async fn referee_activity(conn: &mut $conn, invitation_id: &str) -> sqlx::Result<Option<(Option<i64>, Option<i64>)>> {
            sqlx::query_as(
                "SELECT a.activated_at, a.churned_at FROM referred_users r JOIN user_activity a ON a.user_id = r.user_id
                 WHERE r.invitation_id = $1 ORDER BY r.user_id LIMIT 1",
            )
            .bind(invitation_id)
            .fetch_optional(&mut *conn)
            .await
        }

        /// Counts (Some(day)) or takes back (None) the churn of an ACTIVATED invitation.
        async fn count_churn(conn: &mut $conn, invitation_id: &str, c: &Cohort, day: Option<i64>) -> sqlx::Result<()> {
            let previous: Option<i64> = sqlx::query_scalar("SELECT churn_day FROM invitation_facts WHERE invitation_id = $1")
                .bind(invitation_id)
                .fetch_optional(&mut *conn)
                .await?
                .flatten();
            let (churn_day, n) = match (day, previous) {
                (Some(d), None) => (d, 1i64),
                (None, Some(d)) => (d, -1),
                _ => return Ok(()),
            };
            sqlx::query("UPDATE invitation_facts SET churn_day = $2 WHERE invitation_id = $1")
                .bind(invitation_id)
                .bind(day)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO churn_days (day, referrer_id, flow, referrer_kind, vendor_type, channel, churn_day, churned)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (day, referrer_id, flow, referrer_kind, vendor_type, channel, churn_day)
                 DO UPDATE SET churned = churn_days.churned + excluded.churned",
            )
            .bind(c.day)
            .bind(&c.referrer_id)
            .bind(&c.flow)
            .bind(&c.referrer_kind)
            .bind(&c.vendor_type)
            .bind(&c.channel)
            .bind(churn_day)
            .bind(n)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// A user's activity: only their first of each kind is kept (a repeat, or the same
        /// report again, changes nothing). It reaches the invitation they came through, if
        /// any: ACTIVATED raises it once converted; CHURNED counts against an ACTIVATED one.
        async fn activity(conn: &mut $conn, user_id: &str, kind: ActivityKind, at: i64) -> sqlx::Result<bool> {
            sqlx::query("INSERT INTO user_activity (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
            let sql = match kind {
                ActivityKind::Activated => "UPDATE user_activity SET activated_at = $2 WHERE user_id = $1 AND activated_at IS NULL",
                ActivityKind::Churned => "UPDATE user_activity SET churned_at = $2 WHERE user_id = $1 AND churned_at IS NULL",
            };
            let changed = sqlx::query(sql).bind(user_id).bind(at).execute(&mut *conn).await?.rows_affected() > 0;
            if !changed {
                return Ok(false);
            }
            let invitation: Option<String> =
                sqlx::query_scalar("SELECT invitation_id FROM referred_users WHERE user_id = $1 AND invitation_id <> ''")
                    .bind(user_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let Some(invitation) = invitation else { return Ok(true) };
            match kind {
                ActivityKind::Activated => raise_stage(conn, &invitation, STAGE_ACTIVATED).await?,
                ActivityKind::Churned => {
                    if let Some(row) = invitation_row(conn, &invitation).await?
                        && row.stage == STAGE_ACTIVATED
                    {
                        count_churn(conn, &invitation, &row.cohort, Some(day_of_secs(at))).await?;
                    }
                }
            }
            Ok(true)
        }

        /// Adds `amount` to a referrer's revenue of `day` in `currency`, starting a new row
        /// when the current one would leave `fx::ROW_LIMIT`.
        async fn add_revenue(conn: &mut $conn, referrer_id: &str, day: i64, currency: &str, amount: i64) -> sqlx::Result<()> {
            if amount == 0 || currency.is_empty() {
                return Ok(());
            }
            let last: Option<(i32, i64)> = sqlx::query_as(
                "SELECT part, revenue_minor FROM revenue_days WHERE referrer_id = $1 AND day = $2 AND currency = $3
                 ORDER BY part DESC LIMIT 1",
            )
            .bind(referrer_id)
            .bind(day)
            .bind(currency)
            .fetch_optional(&mut *conn)
            .await?;
            let part = match last {
                Some((part, current)) if fx::fits_row(current, amount) => part,
                Some((part, _)) => part + 1,
                None => 0,
            };
            sqlx::query(
                "INSERT INTO revenue_days (referrer_id, day, currency, part, revenue_minor) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (referrer_id, day, currency, part) DO UPDATE SET revenue_minor = revenue_days.revenue_minor + excluded.revenue_minor",
            )
            .bind(referrer_id)
            .bind(day)
            .bind(currency)
            .bind(part)
            .bind(amount)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        async fn signup(conn: &mut $conn, s: &SignupFact) -> sqlx::Result<()> {
            if referred(conn, "user_id", &s.user_id).await?.is_some() {
                return Ok(()); // a user is attributed once
            }
            let by_invitation = if s.invitation_id.is_empty() {
                None
            } else {
                invitation_row(conn, &s.invitation_id).await?
            };
            let (cohort, created_at) = match by_invitation {
                Some(inv) => (inv.cohort, Some(inv.created_at)),
                None => {
                    // A signup through a code or click without an invitation counts on the
                    // day of its invitation if known, else its own.
                    let day = day_of_secs(s.invitation_created_at.unwrap_or(s.at));
                    let vendor = if s.vendor_type.is_empty() {
                        referrer_vendor(conn, &s.referrer_id).await?
                    } else {
                        s.vendor_type.clone()
                    };
                    (
                        Cohort {
                            day,
                            flow: s.flow.clone(),
                            referrer_id: s.referrer_id.clone(),
                            referrer_kind: s.referrer_kind.clone(),
                            vendor_type: vendor,
                            channel: s.channel.clone(),
                            template_id: String::new(),
                            template_variant: String::new(),
                        },
                        s.invitation_created_at,
                    )
                }
            };
            let cycle = created_at.map(|c| (s.at - c).max(0));
            // Fraud review may have rejected it before it was read (the fraud log read first).
            let rejected = !s.signup_id.is_empty()
                && sqlx::query_scalar::<_, String>("SELECT signup_id FROM rejected_signups WHERE signup_id = $1")
                    .bind(&s.signup_id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .is_some();
            sqlx::query(
                "INSERT INTO referred_users (user_id, signup_id, referrer_id, invitation_id, day, flow, referrer_kind, vendor_type, channel, template_id, template_variant, signed_up_at, cycle_seconds, rejected)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&s.user_id)
            .bind(&s.signup_id)
            .bind(&cohort.referrer_id)
            .bind(&s.invitation_id)
            .bind(cohort.day)
            .bind(&cohort.flow)
            .bind(&cohort.referrer_kind)
            .bind(&cohort.vendor_type)
            .bind(&cohort.channel)
            .bind(&cohort.template_id)
            .bind(&cohort.template_variant)
            .bind(s.at)
            .bind(cycle)
            .bind(i32::from(rejected))
            .execute(&mut *conn)
            .await?;
            if rejected {
                // As if counted and taken back: only the invitation's stage stays.
                if !s.invitation_id.is_empty() {
                    raise_stage(conn, &s.invitation_id, STAGE_SIGNED_UP).await?;
                }
                return Ok(());
            }
            let delta = Delta {
                signups: 1,
                cycle_seconds: cycle.unwrap_or(0),
                cycle_signups: i64::from(cycle.is_some()),
                ..Delta::default()
            };
            bump_cohort(conn, &cohort, &delta).await?;
            bump_referrer(conn, &cohort, &delta, 0).await?;
            if !cohort.template_id.is_empty() {
                bump_experiment(conn, &cohort, 0, 1).await?;
            }
            if !s.invitation_id.is_empty() {
                raise_stage(conn, &s.invitation_id, STAGE_SIGNED_UP).await?;
            }
            second_order(conn, &cohort.referrer_id, &s.user_id, 1).await
        }

        /// Second-order reach: the referrer of this signup's referrer gains one; and the new
        /// user's own referrals so far (if they referred before being referred) count for
        /// the referrer who brought them in.
        async fn second_order(conn: &mut $conn, referrer_id: &str, user_id: &str, sign: i64) -> sqlx::Result<()> {
            let grand: Option<(String,)> =
                sqlx::query_as("SELECT referrer_id FROM referred_users WHERE user_id = $1 AND rejected = 0")
                    .bind(referrer_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some((grand,)) = grand {
                add_reach(conn, &grand, sign).await?;
            }
            let own: Option<(i64,)> = sqlx::query_as("SELECT signups FROM referrers WHERE referrer_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some((n,)) = own
                && n != 0
            {
                add_reach(conn, referrer_id, sign * n).await?;
            }
            Ok(())
        }

        async fn add_reach(conn: &mut $conn, referrer_id: &str, n: i64) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO referrers (referrer_id, second_order_reach) VALUES ($1, $2)
                 ON CONFLICT (referrer_id) DO UPDATE SET second_order_reach = referrers.second_order_reach + excluded.second_order_reach",
            )
            .bind(referrer_id)
            .bind(n)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        async fn referrer_vendor(conn: &mut $conn, referrer_id: &str) -> sqlx::Result<String> {
            let row: Option<(String,)> = sqlx::query_as("SELECT vendor_type FROM referrers WHERE referrer_id = $1")
                .bind(referrer_id)
                .fetch_optional(&mut *conn)
                .await?;
            // A referrer no event has described yet has no vendor type (the empty dimension).
            Ok(row.map(|r| r.0).unwrap_or_default())
        }

        /// What a conversion added, as `conversion_facts` keeps it.
        #[derive(sqlx::FromRow)]
        struct ConversionRow {
            #[sqlx(flatten)]
            cohort: Cohort,
            /// Empty while only a rejection has been read.
            user_id: String,
            invitation_id: String,
            counted: i32,
            revenue_minor: i64,
            applied: i32,
            rejected: i32,
            /// The conversion's own currency, amount and day (revenue_days).
            currency: String,
            amount_minor: i64,
            conversion_day: i64,
        }

        async fn conversion_row(conn: &mut $conn, conversion_id: &str) -> sqlx::Result<Option<ConversionRow>> {
            let sql = format!(
                "SELECT {COHORT_COLS}, user_id, invitation_id, counted, revenue_minor, applied, rejected,
                   currency, amount_minor, conversion_day
                 FROM conversion_facts WHERE conversion_id = $1"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(conversion_id).fetch_optional(&mut *conn).await
        }

        /// One attribution credit of one conversion (an `attribution_days` key and amounts).
        #[derive(Debug, sqlx::FromRow)]
        struct CreditRow {
            model: String,
            day: i64,
            referrer_id: String,
            channel: String,
            flow: String,
            referrer_kind: String,
            vendor_type: String,
            currency: String,
            revenue_minor: i64,
            conversions: f64,
        }

        /// Adds `sign` × the credit to `attribution_days`.
        async fn add_credit(conn: &mut $conn, c: &CreditRow, sign: i64) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO attribution_days (model, day, referrer_id, channel, flow, referrer_kind, vendor_type, currency, revenue_minor, conversions, credits)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (model, day, referrer_id, channel, flow, referrer_kind, vendor_type, currency) DO UPDATE SET
                   revenue_minor = attribution_days.revenue_minor + excluded.revenue_minor,
                   conversions = attribution_days.conversions + excluded.conversions,
                   credits = attribution_days.credits + excluded.credits",
            )
            .bind(&c.model)
            .bind(c.day)
            .bind(&c.referrer_id)
            .bind(&c.channel)
            .bind(&c.flow)
            .bind(&c.referrer_kind)
            .bind(&c.vendor_type)
            .bind(&c.currency)
            .bind(sign * c.revenue_minor)
            .bind(sign as f64 * c.conversions)
            .bind(sign)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        async fn conversion(conn: &mut $conn, c: &ConversionFact, currency: &str) -> sqlx::Result<()> {
            let known = if c.conversion_id.is_empty() { None } else { conversion_row(conn, &c.conversion_id).await? };
            if known.as_ref().is_some_and(|k| !k.user_id.is_empty()) {
                return Ok(()); // this conversion was read before
            }
            let rejected_first = known.is_some_and(|k| k.rejected == 1);
            let mut referral_rejected = false;
            let (cohort, invitation_id, converted) = match referred(conn, "user_id", &c.user_id).await? {
                Some(r) => {
                    referral_rejected = r.rejected == 1;
                    (r.cohort, r.invitation_id, r.converted == 1)
                }
                None => (
                    Cohort {
                        day: day_of_secs(c.at),
                        flow: c.flow.clone(),
                        referrer_id: c.referrer_id.clone(),
                        referrer_kind: c.referrer_kind.clone(),
                        vendor_type: referrer_vendor(conn, &c.referrer_id).await?,
                        channel: String::new(),
                        template_id: String::new(),
                        template_variant: String::new(),
                    },
                    c.invitation_id.clone(),
                    false,
                ),
            };
            let counts = c.first_paid && !converted;
            let revenue = if c.currency == currency { c.amount_minor } else { 0 };
            if !c.conversion_id.is_empty() {
                let sql = format!(
                    "INSERT INTO conversion_facts (conversion_id, {COHORT_COLS}, user_id, invitation_id, counted, revenue_minor, applied,
                       currency, amount_minor, conversion_day)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                     ON CONFLICT (conversion_id) DO UPDATE SET day = excluded.day, flow = excluded.flow,
                       referrer_id = excluded.referrer_id, referrer_kind = excluded.referrer_kind,
                       vendor_type = excluded.vendor_type, channel = excluded.channel, template_id = excluded.template_id,
                       template_variant = excluded.template_variant, user_id = excluded.user_id,
                       invitation_id = excluded.invitation_id, counted = excluded.counted,
                       revenue_minor = excluded.revenue_minor, applied = excluded.applied,
                       currency = excluded.currency, amount_minor = excluded.amount_minor, conversion_day = excluded.conversion_day"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&c.conversion_id)
                    .bind(cohort.day)
                    .bind(&cohort.flow)
                    .bind(&cohort.referrer_id)
                    .bind(&cohort.referrer_kind)
                    .bind(&cohort.vendor_type)
                    .bind(&cohort.channel)
                    .bind(&cohort.template_id)
                    .bind(&cohort.template_variant)
                    .bind(&c.user_id)
                    .bind(&invitation_id)
                    .bind(i32::from(counts))
                    .bind(revenue)
                    .bind(i32::from(!rejected_first && !referral_rejected))
                    .bind(&c.currency)
                    .bind(c.amount_minor)
                    .bind(day_of_secs(c.at))
                    .execute(&mut *conn)
                    .await?;
            }
            if rejected_first {
                // Fraud rejected it before it was read: it adds nothing, and if it was the
                // user's conversion their invitation stops at SIGNED_UP.
                if counts {
                    cap_converted(conn, &invitation_id).await?;
                }
                return Ok(());
            }
            if referral_rejected {
                // No referrer gets credit for a rejected referral (docs/api.md); as when the
                // rejection is read after the conversion, only the invitation's stage stays.
                if counts && !invitation_id.is_empty() {
                    raise_stage(conn, &invitation_id, STAGE_CONVERTED).await?;
                }
                return Ok(());
            }
            let delta = Delta {
                conversions: i64::from(counts),
                revenue_minor: revenue,
                ..Delta::default()
            };
            bump_cohort(conn, &cohort, &delta).await?;
            bump_referrer(conn, &cohort, &delta, 0).await?;
            // Every currency, as recorded: reports convert it (or list it) when read.
            add_revenue(conn, &cohort.referrer_id, day_of_secs(c.at), &c.currency, c.amount_minor).await?;
            if counts {
                sqlx::query("UPDATE referred_users SET converted = 1 WHERE user_id = $1")
                    .bind(&c.user_id)
                    .execute(&mut *conn)
                    .await?;
                if !invitation_id.is_empty() {
                    raise_stage(conn, &invitation_id, STAGE_CONVERTED).await?;
                }
            }
            // Every attributed conversion's revenue is credited by each model (and what each
            // credit was is kept, to be taken back if fraud rejects the conversion).
            let day = day_of_secs(c.at);
            for model in MODELS {
                let w = attribution::weights(model, &c.touches, c.at);
                let revenue = attribution::split_minor(c.amount_minor, &w);
                for ((touch, weight), minor) in c.touches.iter().zip(&w).zip(revenue) {
                    let (flow, kind, vendor) = if touch.referrer_id == cohort.referrer_id {
                        (cohort.flow.clone(), cohort.referrer_kind.clone(), cohort.vendor_type.clone())
                    } else {
                        let row: Option<(String, String)> =
                            sqlx::query_as("SELECT referrer_kind, vendor_type FROM referrers WHERE referrer_id = $1")
                                .bind(&touch.referrer_id)
                                .fetch_optional(&mut *conn)
                                .await?;
                        // A referrer no event has described yet: kind and vendor type unknown (empty).
                        let (k, v) = row.unwrap_or_default();
                        (String::new(), k, v)
                    };
                    let credit = CreditRow {
                        model: model.as_str().to_string(),
                        day,
                        referrer_id: touch.referrer_id.clone(),
                        channel: if touch.channel.is_empty() { cohort.channel.clone() } else { touch.channel.clone() },
                        flow,
                        referrer_kind: kind,
                        vendor_type: vendor,
                        currency: c.currency.clone(),
                        revenue_minor: minor,
                        conversions: if counts { *weight } else { 0.0 },
                    };
                    add_credit(conn, &credit, 1).await?;
                    if !c.conversion_id.is_empty() {
                        sqlx::query(
                            "INSERT INTO conversion_credits (conversion_id, model, day, referrer_id, channel, flow, referrer_kind, vendor_type, currency, revenue_minor, conversions)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                             ON CONFLICT (conversion_id, model, referrer_id, channel) DO UPDATE SET
                               revenue_minor = conversion_credits.revenue_minor + excluded.revenue_minor,
                               conversions = conversion_credits.conversions + excluded.conversions",
                        )
                        .bind(&c.conversion_id)
                        .bind(&credit.model)
                        .bind(credit.day)
                        .bind(&credit.referrer_id)
                        .bind(&credit.channel)
                        .bind(&credit.flow)
                        .bind(&credit.referrer_kind)
                        .bind(&credit.vendor_type)
                        .bind(&credit.currency)
                        .bind(credit.revenue_minor)
                        .bind(credit.conversions)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
            }
            Ok(())
        }

        /// Fraud rejected a conversion: it is not a conversion (docs/api.md: a REJECTed conversion
        /// earns nothing) and its revenue and attribution credits are taken back. Read before
        /// the conversion itself, it is remembered and the conversion then adds nothing.
        async fn reject_conversion(conn: &mut $conn, conversion_id: &str) -> sqlx::Result<()> {
            let Some(k) = conversion_row(conn, conversion_id).await? else {
                sqlx::query("INSERT INTO conversion_facts (conversion_id, rejected) VALUES ($1, 1)")
                    .bind(conversion_id)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            };
            if k.rejected == 1 {
                return Ok(());
            }
            sqlx::query("UPDATE conversion_facts SET rejected = 1 WHERE conversion_id = $1")
                .bind(conversion_id)
                .execute(&mut *conn)
                .await?;
            if k.applied == 1 {
                // The user's conversion is taken back unless a rejection of the referral
                // already took it (reject_signup subtracts `converted`).
                let still_counted = k.counted == 1
                    && match referred(conn, "user_id", &k.user_id).await? {
                        Some(r) => r.converted == 1 && r.rejected == 0,
                        None => true,
                    };
                let delta = Delta {
                    conversions: -i64::from(still_counted),
                    ..Delta::default()
                };
                bump_cohort(conn, &k.cohort, &delta).await?;
                bump_referrer(conn, &k.cohort, &delta, 0).await?;
                take_back_revenue(conn, conversion_id, &k).await?;
            }
            if k.counted == 1 {
                sqlx::query("UPDATE referred_users SET converted = 0 WHERE user_id = $1")
                    .bind(&k.user_id)
                    .execute(&mut *conn)
                    .await?;
                cap_converted(conn, &k.invitation_id).await?;
            }
            Ok(())
        }

        /// Takes an applied conversion's revenue and attribution credits back out of the
        /// rollups and marks it no longer applied.
        async fn take_back_revenue(conn: &mut $conn, conversion_id: &str, k: &ConversionRow) -> sqlx::Result<()> {
            let delta = Delta {
                revenue_minor: -k.revenue_minor,
                ..Delta::default()
            };
            bump_cohort(conn, &k.cohort, &delta).await?;
            bump_referrer(conn, &k.cohort, &delta, 0).await?;
            add_revenue(conn, &k.cohort.referrer_id, k.conversion_day, &k.currency, -k.amount_minor).await?;
            sqlx::query("UPDATE conversion_facts SET applied = 0 WHERE conversion_id = $1")
                .bind(conversion_id)
                .execute(&mut *conn)
                .await?;
            let credits: Vec<CreditRow> = sqlx::query_as(
                "SELECT model, day, referrer_id, channel, flow, referrer_kind, vendor_type, currency, revenue_minor, conversions
                 FROM conversion_credits WHERE conversion_id = $1 ORDER BY model, referrer_id, channel",
            )
            .bind(conversion_id)
            .fetch_all(&mut *conn)
            .await?;
            for credit in &credits {
                add_credit(conn, credit, -1).await?;
            }
            Ok(())
        }

        /// The invitation's conversion was rejected: it stops at SIGNED_UP (its CONVERTED is
        /// taken back) and no later CONVERTED transition raises it again.
        async fn cap_converted(conn: &mut $conn, invitation_id: &str) -> sqlx::Result<()> {
            if invitation_id.is_empty() {
                return Ok(());
            }
            let Some(inv) = invitation_row(conn, invitation_id).await? else { return Ok(()) };
            sqlx::query("UPDATE invitation_facts SET conversion_rejected = 1, stage = $2 WHERE invitation_id = $1")
                .bind(invitation_id)
                .bind(inv.stage.min(STAGE_SIGNED_UP))
                .execute(&mut *conn)
                .await?;
            if inv.stage >= STAGE_CONVERTED {
                // CONVERTED and what followed it (ACTIVATED, its churn) are taken back.
                let mut delta = Delta::default();
                for s in STAGE_CONVERTED..=inv.stage {
                    delta.stages[(s - 1) as usize] = -1;
                }
                bump_cohort(conn, &inv.cohort, &delta).await?;
                bump_referrer(conn, &inv.cohort, &Delta::default(), -1).await?;
                count_churn(conn, invitation_id, &inv.cohort, None).await?;
            }
            Ok(())
        }

        /// A rejected referral stops counting: its signup, its conversion and the second-
        /// order reach it gave, and its conversions' revenue and credits.
        async fn reject_signup(conn: &mut $conn, signup_id: &str) -> sqlx::Result<()> {
            if signup_id.is_empty() {
                return Ok(());
            }
            let Some(r) = referred(conn, "signup_id", signup_id).await? else {
                // Read before the signup: remembered, and the signup then counts for nothing.
                sqlx::query("INSERT INTO rejected_signups (signup_id) VALUES ($1) ON CONFLICT (signup_id) DO NOTHING")
                    .bind(signup_id)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            };
            if r.rejected == 1 {
                return Ok(());
            }
            let cohort = r.cohort;
            second_order(conn, &cohort.referrer_id, &r.user_id, -1).await?;
            sqlx::query("UPDATE referred_users SET rejected = 1 WHERE user_id = $1")
                .bind(&r.user_id)
                .execute(&mut *conn)
                .await?;
            let delta = Delta {
                signups: -1,
                conversions: -i64::from(r.converted),
                cycle_seconds: -r.cycle_seconds.unwrap_or(0),
                cycle_signups: -i64::from(r.cycle_seconds.is_some()),
                ..Delta::default()
            };
            bump_cohort(conn, &cohort, &delta).await?;
            bump_referrer(conn, &cohort, &delta, 0).await?;
            if !cohort.template_id.is_empty() {
                bump_experiment(conn, &cohort, 0, -1).await?;
            }
            // No referrer gets credit for a rejected referral (docs/api.md): its conversions'
            // revenue and attribution credits go too.
            let sql = format!(
                "SELECT conversion_id, {COHORT_COLS}, user_id, invitation_id, counted, revenue_minor, applied, rejected,
                   currency, amount_minor, conversion_day
                 FROM conversion_facts WHERE user_id = $1 AND applied = 1 ORDER BY conversion_id"
            );
            let applied: Vec<(String, ConversionRow)> = sqlx::query_as::<_, AppliedConversion>(sqlx::AssertSqlSafe(sql))
                .bind(&r.user_id)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|a| (a.conversion_id, a.row))
                .collect();
            for (id, k) in &applied {
                take_back_revenue(conn, id, k).await?;
            }
            Ok(())
        }

        #[derive(sqlx::FromRow)]
        struct AppliedConversion {
            conversion_id: String,
            #[sqlx(flatten)]
            row: ConversionRow,
        }

        async fn award_badge(conn: &mut $conn, referrer_id: &str, badge: &str) -> sqlx::Result<()> {
            let row: Option<(String,)> = sqlx::query_as("SELECT badges FROM referrers WHERE referrer_id = $1")
                .bind(referrer_id)
                .fetch_optional(&mut *conn)
                .await?;
            let badges = crate::domain::metrics::add_badge(row.map(|r| r.0).as_deref().unwrap_or(""), badge);
            let tier = crate::domain::metrics::tier_of_badges(&badges);
            sqlx::query(
                "INSERT INTO referrers (referrer_id, badges, tier) VALUES ($1, $2, $3)
                 ON CONFLICT (referrer_id) DO UPDATE SET badges = excluded.badges, tier = excluded.tier",
            )
            .bind(referrer_id)
            .bind(badges)
            .bind(tier)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Adds to the cohort's `daily` and `referrer_days` rows.
        async fn bump_cohort(conn: &mut $conn, c: &Cohort, d: &Delta) -> sqlx::Result<()> {
            let values = d.values();
            let sql = super::sql::counter_upsert("daily", &["day", "flow", "referrer_kind", "vendor_type", "channel"], &super::sql::COUNTERS);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(c.day)
                .bind(&c.flow)
                .bind(&c.referrer_kind)
                .bind(&c.vendor_type)
                .bind(&c.channel);
            for v in values {
                q = q.bind(v);
            }
            q.execute(&mut *conn).await?;
            let counters = &super::sql::COUNTERS[..super::sql::REFERRER_DAY_COUNTERS];
            let sql = super::sql::counter_upsert("referrer_days", &["referrer_id", "day", "flow"], counters);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&c.referrer_id).bind(c.day).bind(&c.flow);
            for v in &values[..super::sql::REFERRER_DAY_COUNTERS] {
                q = q.bind(*v);
            }
            q.execute(&mut *conn).await?;
            Ok(())
        }

        /// Adds to the referrer's all-time totals (and learns its kind and vendor type).
        async fn bump_referrer(conn: &mut $conn, c: &Cohort, d: &Delta, stage_sum: i64) -> sqlx::Result<()> {
            let last_day = if d.invitations > 0 { c.day } else { 0 };
            sqlx::query(
                "INSERT INTO referrers (referrer_id, referrer_kind, vendor_type, invitations, signups, conversions, revenue_minor, stage_sum, last_day)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (referrer_id) DO UPDATE SET
                   referrer_kind = CASE WHEN excluded.referrer_kind = '' THEN referrers.referrer_kind ELSE excluded.referrer_kind END,
                   vendor_type = CASE WHEN excluded.vendor_type = '' THEN referrers.vendor_type ELSE excluded.vendor_type END,
                   invitations = referrers.invitations + excluded.invitations,
                   signups = referrers.signups + excluded.signups,
                   conversions = referrers.conversions + excluded.conversions,
                   revenue_minor = referrers.revenue_minor + excluded.revenue_minor,
                   stage_sum = referrers.stage_sum + excluded.stage_sum,
                   last_day = CASE WHEN excluded.last_day > referrers.last_day THEN excluded.last_day ELSE referrers.last_day END",
            )
            .bind(&c.referrer_id)
            .bind(&c.referrer_kind)
            .bind(&c.vendor_type)
            .bind(d.invitations)
            .bind(d.signups)
            .bind(d.conversions)
            .bind(d.revenue_minor)
            .bind(stage_sum)
            .bind(last_day)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        async fn bump_experiment(conn: &mut $conn, c: &Cohort, sent: i64, signups: i64) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO experiment_cohorts (template_id, variant, day, flow, referrer_kind, vendor_type, sent, signups)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (template_id, variant, day, flow, referrer_kind, vendor_type) DO UPDATE SET
                   sent = experiment_cohorts.sent + excluded.sent, signups = experiment_cohorts.signups + excluded.signups",
            )
            .bind(&c.template_id)
            .bind(&c.template_variant)
            .bind(c.day)
            .bind(&c.flow)
            .bind(&c.referrer_kind)
            .bind(&c.vendor_type)
            .bind(sent)
            .bind(signups)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Records that `referrer_id` invited on `day` in `scope`, keeping the scope's gap
        /// histogram exact: the new day's gap to the previous active day, and the next
        /// active day's gap (which now reaches back to this day instead). The same changes to
        /// active_since go into `since`.
        async fn mark_active(
            conn: &mut $conn,
            scope: &str,
            referrer_id: &str,
            day: i64,
            since: &mut SinceDeltas,
        ) -> sqlx::Result<()> {
            let inserted = sqlx::query("INSERT INTO active_days (scope, referrer_id, day) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(scope)
                .bind(referrer_id)
                .bind(day)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if inserted == 0 {
                return Ok(());
            }
            let prev: Option<i64> =
                sqlx::query_scalar("SELECT MAX(day) FROM active_days WHERE scope = $1 AND referrer_id = $2 AND day < $3")
                    .bind(scope)
                    .bind(referrer_id)
                    .bind(day)
                    .fetch_one(&mut *conn)
                    .await?;
            let next: Option<i64> =
                sqlx::query_scalar("SELECT MIN(day) FROM active_days WHERE scope = $1 AND referrer_id = $2 AND day > $3")
                    .bind(scope)
                    .bind(referrer_id)
                    .bind(day)
                    .fetch_one(&mut *conn)
                    .await?;
            for (since_day, d, n) in scope::since_changes(day, prev, next) {
                *since.entry((scope.to_string(), since_day, d)).or_default() += n;
            }
            bump_gap(conn, scope, day, prev.map_or(FIRST, |p| day - p), 1).await?;
            if let Some(n) = next {
                bump_gap(conn, scope, n, prev.map_or(FIRST, |p| n - p), -1).await?;
                bump_gap(conn, scope, n, n - day, 1).await?;
            }
            sqlx::query(
                "INSERT INTO referrer_firsts (scope, referrer_id, first_day) VALUES ($1, $2, $3)
                 ON CONFLICT (scope, referrer_id) DO UPDATE SET first_day = excluded.first_day
                 WHERE excluded.first_day < referrer_firsts.first_day",
            )
            .bind(scope)
            .bind(referrer_id)
            .bind(day)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Adds a batch's active_since changes, several rows per statement.
        async fn write_since(conn: &mut $conn, since: SinceDeltas) -> sqlx::Result<()> {
            let rows: Vec<_> = since.into_iter().filter(|(_, n)| *n != 0).collect();
            for chunk in rows.chunks(super::sql::SINCE_ROWS_PER_STATEMENT) {
                let sql = super::sql::since_upsert(chunk.len());
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for ((scope, since_day, day), n) in chunk {
                    q = q.bind(scope).bind(*since_day).bind(*day).bind(*n);
                }
                q.execute(&mut *conn).await?;
            }
            Ok(())
        }

        async fn bump_gap(conn: &mut $conn, scope: &str, day: i64, gap: i64, n: i64) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO active_gaps (scope, day, gap, referrers) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (scope, day, gap) DO UPDATE SET referrers = active_gaps.referrers + excluded.referrers",
            )
            .bind(scope)
            .bind(day)
            .bind(gap)
            .bind(n)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        // ---- webhooks: endpoints, the delivery log with its leases, the webhook consumer's
        // offsets (store::webhooks). Their writes take `begin_webhook_write()`, not the
        // rollup lock.

        /// Ids of deliveries due at `$1`, not leased, of enabled endpoints.
        macro_rules! due_deliveries {
            () => {
                "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                 WHERE d.state = 'PENDING' AND d.next_attempt_at <= $1 \
                 AND (d.lease_until IS NULL OR d.lease_until < $1) \
                 AND e.enabled = TRUE AND e.deleted_at IS NULL"
            };
        }

        use crate::store::webhooks as wh;

        impl crate::store::webhooks::WebhookStore for $store {
            async fn create_endpoint(&self, new: wh::NewEndpoint, audit: &referral_common::audit::AuditEntry) -> sqlx::Result<wh::EndpointRow> {
                let types = serde_json::to_string(&new.event_types).unwrap_or_else(|_| "[]".into());
                let mut tx = self.begin_webhook_write().await?;
                let row: wh::EndpointRow = sqlx::query_as(
                    "INSERT INTO webhook_endpoints (id, url, event_types, description, secret, enabled, \
                     consecutive_failures, disabled_reason, created_at) VALUES ($1, $2, $3, $4, $5, TRUE, 0, '', $6) \
                     RETURNING id, url, event_types, description, secret, enabled, consecutive_failures, \
                     disabled_reason, created_at",
                )
                .bind(&new.id)
                .bind(&new.url)
                .bind(types)
                .bind(&new.description)
                .bind(&new.secret)
                .bind(new.created_at)
                .fetch_one(&mut *tx)
                .await?;
                referral_common::audit::record(&mut *tx, &audit.clone().after(wh::audit_view(&row)?)).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn get_endpoint(&self, id: &str) -> sqlx::Result<Option<wh::EndpointRow>> {
                sqlx::query_as(
                    "SELECT id, url, event_types, description, secret, enabled, consecutive_failures, \
                     disabled_reason, created_at FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await
            }

            async fn delete_endpoint(&self, id: &str, at: chrono::DateTime<chrono::Utc>, audit: &referral_common::audit::AuditEntry) -> sqlx::Result<Option<wh::EndpointRow>> {
                let mut tx = self.begin_webhook_write().await?;
                let row: Option<wh::EndpointRow> = sqlx::query_as(
                    "UPDATE webhook_endpoints SET deleted_at = $2, enabled = FALSE \
                     WHERE id = $1 AND deleted_at IS NULL \
                     RETURNING id, url, event_types, description, secret, enabled, consecutive_failures, \
                     disabled_reason, created_at",
                )
                .bind(id)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = &row {
                    referral_common::audit::record(&mut *tx, &audit.clone().before(wh::audit_view(row)?)).await?;
                }
                tx.commit().await?;
                Ok(row)
            }

            async fn list_deliveries(&self, endpoint_id: &str, after: Option<&str>, limit: u32) -> sqlx::Result<Vec<wh::DeliveryRow>> {
                sqlx::query_as(
                    "SELECT id, endpoint_id, event_id, event_type, attempts, state, last_status, last_error, \
                     next_attempt_at, delivered_at, created_at FROM webhook_deliveries \
                     WHERE endpoint_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(endpoint_id)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
            }

            async fn webhook_offset(&self, source: &str) -> sqlx::Result<i64> {
                Ok(sqlx::query_scalar("SELECT last_offset FROM webhook_offsets WHERE source = $1")
                    .bind(source)
                    .fetch_optional(&self.pool)
                    .await?
                    .unwrap_or(0))
            }

            async fn fan_out(&self, source: &str, last_offset: i64, events: Vec<wh::Fanout>) -> sqlx::Result<u64> {
                let mut tx = self.begin_webhook_write().await?;
                let endpoints: Vec<(String, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                    "SELECT id, event_types, created_at FROM webhook_endpoints WHERE enabled = TRUE AND deleted_at IS NULL",
                )
                .fetch_all(&mut *tx)
                .await?;
                let endpoints: Vec<(String, Vec<String>, chrono::DateTime<chrono::Utc>)> = endpoints
                    .into_iter()
                    .map(|(id, types, created)| Ok((id, wh::decode_event_types(&types)?, created)))
                    .collect::<sqlx::Result<_>>()?;
                let mut created = 0;
                for event in &events {
                    for (endpoint_id, types, endpoint_created) in &endpoints {
                        // An endpoint hears what happens from its creation on, not the past.
                        if event.occurred_at < *endpoint_created || !crate::domain::webhooks::subscribed(types, &event.event_type) {
                            continue;
                        }
                        let now = referral_common::ids::now();
                        created += sqlx::query(
                            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload, attempts, \
                             state, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 0, 'PENDING', $6, $6) \
                             ON CONFLICT (endpoint_id, event_id) DO NOTHING",
                        )
                        .bind(referral_common::ids::new_id())
                        .bind(endpoint_id)
                        .bind(&event.event_id)
                        .bind(&event.event_type)
                        .bind(&event.payload)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                }
                sqlx::query(
                    "INSERT INTO webhook_offsets (source, last_offset) VALUES ($1, $2) \
                     ON CONFLICT (source) DO UPDATE SET last_offset = excluded.last_offset \
                     WHERE webhook_offsets.last_offset < excluded.last_offset",
                )
                .bind(source)
                .bind(last_offset)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn claim_due(
                &self,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                until: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> sqlx::Result<Vec<wh::Claimed>> {
                // A plain read first: an idle dispatcher polls often and must not take the
                // write lock (SQLite has one) just to find nothing due.
                let due: Option<String> = sqlx::query_scalar(concat!(due_deliveries!(), " LIMIT 1"))
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                if due.is_none() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin_webhook_write().await?;
                let ids: Vec<String> = sqlx::query_scalar(concat!(
                    due_deliveries!(),
                    " ORDER BY d.next_attempt_at LIMIT $2",
                    $skip_locked
                ))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                let mut claimed = Vec::with_capacity(ids.len());
                for id in ids {
                    sqlx::query("UPDATE webhook_deliveries SET lease_owner = $2, lease_until = $3 WHERE id = $1")
                        .bind(&id)
                        .bind(owner)
                        .bind(until)
                        .execute(&mut *tx)
                        .await?;
                    let row: Option<wh::Claimed> = sqlx::query_as(
                        "SELECT d.id, d.endpoint_id, d.event_id, d.payload, d.attempts, d.created_at, e.url, e.secret \
                         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
                    )
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    claimed.extend(row);
                }
                tx.commit().await?;
                Ok(claimed)
            }

            async fn record_attempt(
                &self,
                claimed: &wh::Claimed,
                owner: &str,
                outcome: wh::Attempted,
                now: chrono::DateTime<chrono::Utc>,
                policy: &crate::domain::webhooks::retry::RetryPolicy,
            ) -> sqlx::Result<bool> {
                let mut tx = self.begin_webhook_write().await?;
                let (state, status, error, next, delivered_at) = match &outcome {
                    wh::Attempted::Delivered { status } => (wh::DELIVERED, *status, String::new(), None, Some(now)),
                    wh::Attempted::Failed { status, error, next } => {
                        (if next.is_some() { wh::PENDING } else { wh::FAILED }, *status, error.clone(), *next, None)
                    }
                };
                let updated = sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $3, last_status = $4, \
                     last_error = $5, next_attempt_at = $6, delivered_at = $7, lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1 AND lease_owner = $2 AND state = 'PENDING'",
                )
                .bind(&claimed.id)
                .bind(owner)
                .bind(state)
                .bind(status)
                .bind(&error)
                .bind(next)
                .bind(delivered_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                if matches!(outcome, wh::Attempted::Delivered { .. }) {
                    sqlx::query("UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = $1")
                        .bind(&claimed.endpoint_id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    // Counted while enabled: attempts already under way when it was
                    // disabled do not run the count past the threshold.
                    let failures: Option<i32> = sqlx::query_scalar(
                        "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1 \
                         WHERE id = $1 AND enabled = TRUE RETURNING consecutive_failures",
                    )
                    .bind(&claimed.endpoint_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(failures) = failures
                        && policy.disables(u32::try_from(failures).unwrap_or(0))
                    {
                        sqlx::query(
                            "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2 \
                             WHERE id = $1 AND enabled = TRUE",
                        )
                        .bind(&claimed.endpoint_id)
                        .bind(format!("disabled after {failures} consecutive failed deliveries; last: {error}"))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

pub(crate) use sql_store;

/// A batch's changes to `active_since`, by (scope, since_day, day); sorted, so each
/// statement's rows are distinct and written in one order.
pub type SinceDeltas = std::collections::BTreeMap<(String, i64, i64), i64>;

/// Rows per `active_since` upsert (four parameters each, well under both backends' limits).
pub const SINCE_ROWS_PER_STATEMENT: usize = 250;

/// `INSERT INTO active_since .. VALUES (..), .. ON CONFLICT DO UPDATE` adding `rows` rows.
pub fn since_upsert(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| format!("(${}, ${}, ${}, ${})", 4 * r + 1, 4 * r + 2, 4 * r + 3, 4 * r + 4))
        .collect();
    format!(
        "INSERT INTO active_since (scope, since_day, day, referrers) VALUES {} \
         ON CONFLICT (scope, since_day, day) DO UPDATE SET referrers = active_since.referrers + excluded.referrers",
        values.join(", ")
    )
}

/// The counter columns of `daily`, in order; `referrer_days` has the first eleven.
pub const COUNTERS: [&str; 13] = [
    "invitations",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "signed_up",
    "converted",
    "activated",
    "signups",
    "conversions",
    "revenue_minor",
    "cycle_seconds",
    "cycle_signups",
];
pub const REFERRER_DAY_COUNTERS: usize = 11;

/// The summed counters of `daily` as `DaySums` columns.
pub const SUMS: &str = "CAST(SUM(invitations) AS BIGINT) AS invitations, CAST(SUM(sent) AS BIGINT) AS sent, \
    CAST(SUM(delivered) AS BIGINT) AS delivered, CAST(SUM(opened) AS BIGINT) AS opened, \
    CAST(SUM(clicked) AS BIGINT) AS clicked, CAST(SUM(signed_up) AS BIGINT) AS signed_up, \
    CAST(SUM(converted) AS BIGINT) AS converted, CAST(SUM(activated) AS BIGINT) AS activated, \
    CAST(SUM(signups) AS BIGINT) AS signups, \
    CAST(SUM(conversions) AS BIGINT) AS conversions, CAST(SUM(revenue_minor) AS BIGINT) AS revenue_minor, \
    CAST(SUM(cycle_seconds) AS BIGINT) AS cycle_seconds, CAST(SUM(cycle_signups) AS BIGINT) AS cycle_signups";

/// A rate as its audit rows show it.
pub fn fx_audit_view(r: &super::FxRateRow) -> serde_json::Value {
    serde_json::json!({
        "currency": r.currency,
        "rate": r.rate,
        "effectiveFrom": crate::domain::fx::day_text(r.effective_day),
    })
}

/// ` AND flow = $n ..` for the window's dimension filters, numbered from `next`, and their
/// values in order.
pub fn dim_filters(w: &super::Window, next: usize) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    for (col, v) in [
        ("flow", &w.flow),
        ("referrer_kind", &w.referrer_kind),
        ("vendor_type", &w.vendor_type),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = ${}", next + values.len()));
            values.push(v.clone());
        }
    }
    (sql, values)
}

/// The value a leaderboard ranks by; `col` prefixes each column (`r.` or `SUM(d.`).
pub fn ranking_sql(ranking: super::Ranking, col: &str) -> String {
    let close = if col.starts_with("SUM(") { ")" } else { "" };
    let c = |name: &str| format!("{col}{name}{close}");
    match ranking {
        super::Ranking::Referrals => c("signups"),
        super::Ranking::Revenue => c("revenue_minor"),
        super::Ranking::ConversionRate => format!(
            "CAST({} AS DOUBLE PRECISION) / CASE WHEN {} = 0 THEN 1 ELSE {} END",
            c("signups"),
            c("invitations"),
            c("invitations")
        ),
    }
}

/// `INSERT .. ON CONFLICT (keys) DO UPDATE` adding each counter to the existing row.
pub fn counter_upsert(table: &str, keys: &[&str], counters: &[&str]) -> String {
    let cols: Vec<&str> = keys.iter().chain(counters).copied().collect();
    let params: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let set: Vec<String> = counters
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
        cols.join(", "),
        params.join(", "),
        keys.join(", "),
        set.join(", ")
    )
}
