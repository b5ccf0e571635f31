//! Observe a person: record who they are (e-mail, device) and link them into fraud rings by
//! the keys they were seen with (IP, device, e-mail). Part of every assessment, and on its own
//! when an event tells about a person without asking for a decision.

use chrono::{DateTime, Utc};

use crate::{
    domain::{Scoring, identity, ring},
    store::{REFERRER, Store, StoreResult},
};

/// What an event tells about a person without asking for a decision (ring links, devices).
#[derive(Debug, Clone)]
pub struct Observation {
    pub person_id: String,
    /// [`REFERRER`] or [`REFEREE`](crate::store::REFEREE).
    pub role: &'static str,
    pub email: String,
    pub ip: String,
    pub device_id: String,
    pub at: DateTime<Utc>,
}

/// Records the person's identities and links them into rings, inside `tx`.
pub async fn observe_in<S: Store>(
    store: &S,
    tx: &mut S::Tx,
    o: &Observation,
    scoring: &Scoring,
) -> StoreResult<()> {
    if o.person_id.is_empty() {
        return Ok(());
    }
    // Keyed hashes only: who a person is and what links them, never the values.
    let pii = store.pii();
    let email_key = pii.lookup("email", &o.email);
    let device_key = pii.lookup("device", o.device_id.trim());
    let ip_key = pii.lookup(
        "ip",
        identity::ring_ip(&o.ip, scoring.ring_ignores_non_public_ips),
    );
    let known: Vec<(&str, &str)> = [("email", email_key.as_str()), ("device", device_key.as_str())]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    store.record_identities(tx, &o.person_id, &known, o.at).await?;
    let keys = identity::link_keys(&email_key, &ip_key, &device_key);
    if keys.is_empty() {
        return Ok(());
    }
    link_in(store, tx, &o.person_id, o.role, &keys, o.at).await
}

/// Union-find: puts `person` and every holder of `keys` in one cluster (see
/// [`ring::plan_union`]). A person seen again with the same keys costs two statements: one
/// read (the person's cluster and the keys' clusters, by primary key) and the holders insert.
pub(crate) async fn link_in<S: Store>(
    store: &S,
    tx: &mut S::Tx,
    person: &str,
    role: &str,
    keys: &[String],
    at: DateTime<Utc>,
) -> StoreResult<()> {
    // Read before the holders insert, which changes neither.
    let state = store.ring_state(tx, person, keys).await?;
    if let Some((_, current_role)) = &state.member
        && role == REFERRER
        && current_role != REFERRER
    {
        store.set_ring_role(tx, person, role).await?;
    }
    let first_time = store.hold_links(tx, person, keys).await?;
    if first_time.is_empty() {
        return Ok(());
    }
    // Only the keys this person holds for the first time take part in the union.
    let keyed: Vec<_> = state
        .keyed
        .into_iter()
        .filter(|(key, _)| first_time.contains(key))
        .collect();
    let mine = state.member.map(|(cluster, _)| cluster);
    let Some(plan) = ring::plan_union(mine.as_ref(), &first_time, &keyed) else {
        return Ok(());
    };
    store.apply_union(tx, &plan, person, role, at).await
}
