//! incentive-svc's part of a privacy request (issue #16): what the ledger holds about a person,
//! and their erasure. Erasure keeps the books: every entry, state, payout and conversion
//! keeps its amount and its history; only the person's id (as the referrer an entry is booked
//! to, or as the referee it was earned for) is replaced by their pseudonym, so every balance
//! still sums the same and a supplier's reward for an erased couple is unchanged. The ledger
//! holds no names, contact details, payout details or free-text notes about people (entry
//! reasons are the service's own words), so there is nothing else to tombstone.

use chrono::{DateTime, SecondsFormat, Utc};
use referral_common::{
    ApiError,
    pii::PiiKeys,
    privacy::{Counts, PersonData, export_document, pseudonym_of},
};
use referral_proto::common::v1::PrivacySubject;
use serde_json::{Value, json};

use crate::store::{EntryRow, PersonLedger, Store};

/// The most rows of each kind one export reads (a referrer with more is far outside the
/// seeds' world; the export says when it stopped).
const EXPORT_LIMIT: i64 = 10_000;

/// incentive-svc's [`PersonData`] over its store.
pub struct PersonRecords<S> {
    store: S,
    pii: PiiKeys,
}

impl<S: Store> PersonRecords<S> {
    pub fn new(store: S, pii: PiiKeys) -> Self {
        Self { store, pii }
    }
}

#[tonic::async_trait]
impl<S: Store> PersonData for PersonRecords<S> {
    async fn erase(&self, subject: &PrivacySubject) -> Result<Counts, ApiError> {
        let pseudonym = pseudonym_of(&self.pii, subject)?;
        let done = self.store.rekey_person(&subject.person_id, &pseudonym).await?;
        Ok(Counts::from([
            ("ledgerEntries".to_string(), done.entries),
            ("payouts".to_string(), done.payouts),
            ("conversions".to_string(), done.conversions),
            ("fraudDecisions".to_string(), done.decisions),
        ]))
    }

    async fn export(&self, subject: &PrivacySubject) -> Result<(Counts, Value), ApiError> {
        let ledger = self.store.person_ledger(&subject.person_id, EXPORT_LIMIT).await?;
        Ok(document(&subject.person_id, &ledger))
    }
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn money(amount_minor: i64, currency: &str) -> Value {
    json!({"amountMinor": amount_minor.to_string(), "currency": currency})
}

/// The export: readable JSON in the API's own field names. Rewards another person earned for
/// this one (they were the referee) show what was earned and its state, not who earned it.
pub fn document(person_id: &str, l: &PersonLedger) -> (Counts, Value) {
    let history = |e: &EntryRow| -> Vec<Value> {
        l.states
            .iter()
            .filter(|s| s.entry_id == e.id)
            .map(|s| json!({"state": s.state, "at": instant(s.at), "reason": s.reason, "payoutId": s.payout_id}))
            .collect()
    };
    let (earned, for_them): (Vec<&EntryRow>, Vec<&EntryRow>) =
        l.entries.iter().partition(|e| e.referrer_id == person_id);
    let earned: Vec<Value> = earned
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "kind": e.kind,
                "amount": money(e.amount_minor, &e.currency),
                "campaignBonus": money(e.campaign_bonus_minor, &e.currency),
                "state": e.state,
                "conversionId": e.conversion_id,
                "programId": e.program_id,
                "campaignId": e.campaign_id,
                "milestone": e.milestone,
                "badge": e.badge,
                "createdAt": instant(e.created_at),
                "eligibleAt": instant(e.eligible_at),
                "expiresAt": instant(e.expires_at),
                "payoutId": e.payout_id,
                "reason": e.reason,
                "history": history(e),
            })
        })
        .collect();
    let for_them: Vec<Value> = for_them
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "kind": e.kind,
                "referrerKind": e.referrer_kind,
                "amount": money(e.amount_minor, &e.currency),
                "state": e.state,
                "conversionId": e.conversion_id,
                "createdAt": instant(e.created_at),
            })
        })
        .collect();
    let payouts: Vec<Value> = l
        .payouts
        .iter()
        .map(|p| {
            json!({
                "id": p.payout.id,
                "amount": money(p.payout.amount_minor, &p.payout.currency),
                "status": p.payout.status,
                "createdAt": instant(p.payout.created_at),
                "entries": p.entries,
            })
        })
        .collect();
    let conversions: Vec<Value> = l
        .conversions
        .iter()
        .map(|c| {
            let role = if c.referee_id == person_id {
                "REFEREE"
            } else {
                "REFERRER"
            };
            json!({
                "conversionId": c.conversion_id,
                "role": role,
                "value": money(c.amount_minor, &c.currency),
                "occurredAt": instant(c.occurred_at),
            })
        })
        .collect();
    export_document(vec![
        ("rewardsEarned", earned),
        ("rewardsEarnedForThem", for_them),
        ("payouts", payouts),
        ("conversions", conversions),
    ])
}
