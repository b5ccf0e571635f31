//! analytics-svc's part of a privacy request (issue #16). Erasure keeps the metrics: the
//! person's per-person rows (as a referred user: their signup, conversions and activity; as
//! a referrer: their invitations and every rollup keyed by them) move to their pseudonym in
//! one rollup write transaction, so the K-factor, funnels, cohorts, attribution and
//! leaderboards count exactly what they counted (a referrer on a leaderboard is then listed
//! under the pseudonym); stored webhook bodies naming them are rewritten the same way.
//! Analytics keeps no contact details, IPs, user agents or device ids (`domain::privacy`
//! drops them before anything leaves), and the live feed keeps no history.
//! The export is what analytics holds about them, in the API's field names.

use referral_common::{
    ApiError,
    pii::PiiKeys,
    privacy::{Counts, PersonData, export_document, pseudonym_of},
};
use referral_proto::common::v1::PrivacySubject;
use serde_json::{Value, json};

use crate::{
    domain::{DAY_SECONDS, privacy::rekey, rollup::STAGES},
    store::{Store, privacy::PersonFacts},
};

/// The most rows of each kind one export reads.
const EXPORT_LIMIT: i64 = 10_000;
/// Webhook bodies rewritten per round trip.
const DELIVERY_PAGE: i64 = 200;

/// analytics-svc's [`PersonData`] over its store.
pub struct PersonRecords<S> {
    store: S,
    pii: PiiKeys,
}

impl<S: Store> PersonRecords<S> {
    pub fn new(store: S, pii: PiiKeys) -> Self {
        Self { store, pii }
    }

    /// Rewrites the stored webhook bodies naming `person_id` (as a referrer; referees are
    /// pseudonymous in them from the start); the number rewritten.
    async fn rekey_deliveries(&self, person_id: &str, pseudonym: &str) -> Result<i64, ApiError> {
        let (mut after, mut rewritten) = (String::new(), 0);
        loop {
            let page = self
                .store
                .deliveries_naming(person_id, &after, DELIVERY_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for d in &page {
                // Our own JSON; a body that does not parse names nobody we can find in it.
                let Ok(mut body) = serde_json::from_str::<Value>(&d.payload) else {
                    continue;
                };
                if rekey(&mut body, person_id, pseudonym) {
                    self.store.rewrite_delivery(&d.id, &body.to_string()).await?;
                    rewritten += 1;
                }
            }
        }
        Ok(rewritten)
    }
}

#[tonic::async_trait]
impl<S: Store> PersonData for PersonRecords<S> {
    async fn erase(&self, subject: &PrivacySubject) -> Result<Counts, ApiError> {
        let pseudonym = pseudonym_of(&self.pii, subject)?;
        let mut counts = Counts::new();
        for (kind, n) in self.store.rekey_person(&subject.person_id, &pseudonym).await? {
            *counts.entry(kind.to_string()).or_default() += n;
        }
        let bodies = self.rekey_deliveries(&subject.person_id, &pseudonym).await?;
        counts.insert("webhookDeliveries".into(), bodies);
        Ok(counts)
    }

    async fn export(&self, subject: &PrivacySubject) -> Result<(Counts, Value), ApiError> {
        let facts = self
            .store
            .person_facts(&subject.person_id, &subject.invitation_ids, EXPORT_LIMIT)
            .await?;
        Ok(document(&facts))
    }
}

fn instant(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn day(day: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(day.saturating_mul(DAY_SECONDS), 0).map(|t| t.date_naive().to_string())
}

fn stage_name(stage: i32) -> &'static str {
    usize::try_from(stage - 1)
        .ok()
        .and_then(|i| STAGES.get(i).copied())
        .unwrap_or("NONE")
}

/// The export document and its counts per kind.
pub fn document(f: &PersonFacts) -> (Counts, Value) {
    let signups: Vec<Value> = f
        .referred
        .iter()
        .map(|r| {
            json!({
                "referrerId": r.referrer_id,
                "invitationId": r.invitation_id,
                "flow": r.flow,
                "channel": r.channel,
                "signedUpAt": instant(r.signed_up_at),
                "converted": r.converted != 0,
                "rejectedByFraudReview": r.rejected != 0,
            })
        })
        .collect();
    let conversions: Vec<Value> = f
        .conversions
        .iter()
        .map(|c| {
            json!({
                "conversionId": c.conversion_id,
                "referrerId": c.referrer_id,
                "day": day(c.conversion_day),
                "value": {"amountMinor": c.amount_minor.to_string(), "currency": c.currency},
                "rejectedByFraudReview": c.rejected != 0,
            })
        })
        .collect();
    let activity: Vec<Value> = f
        .activity
        .iter()
        .map(|(activated, churned)| {
            json!({
                "activatedAt": activated.and_then(instant),
                "churnedAt": churned.and_then(instant),
            })
        })
        .collect();
    let funnel: Vec<Value> = f
        .received
        .iter()
        .map(|i| {
            json!({
                "invitationId": i.invitation_id,
                "referrerId": i.referrer_id,
                "flow": i.flow,
                "createdAt": instant(i.created_at),
                "furthestStage": stage_name(i.stage),
            })
        })
        .collect();
    let as_referrer: Vec<Value> = f
        .as_referrer
        .iter()
        .map(|r| {
            json!({
                "referrerKind": r.referrer_kind,
                "invitations": r.invitations,
                "signups": r.signups,
                "conversions": r.conversions,
                "secondOrderReach": r.second_order_reach,
                "tier": r.tier,
                "badges": r.badges,
                "lastActiveDay": day(r.last_day),
            })
        })
        .collect();
    let cohorts: Vec<Value> = f
        .cohorts
        .iter()
        .map(|(scope, first)| json!({"scope": scope, "firstInvitationDay": day(*first)}))
        .collect();
    export_document(vec![
        ("signups", signups),
        ("conversions", conversions),
        ("activity", activity),
        ("funnelStages", funnel),
        ("asReferrer", as_referrer),
        ("cohorts", cohorts),
    ])
}
