//! Re-encrypt what was stored before personal data left fraud-svc's tables (issue #16):
//! migration 0080 cannot know the keys, so rows written before it keep their plaintext in
//! the old columns, `legacy-` identities and `legacy:` ring keys until this runs. Each batch
//! is one transaction holding the assessment lock (assessments wait, never see half a
//! conversion); running it again converts nothing more.
//!
//! - referral and invitation facts: keys and sealed values from the plaintext columns, which
//!   are then blanked; a similarity pair sealed under an older key is sealed again under the
//!   first (`PII_KEYS` rotation);
//! - identities: re-recorded under their keyed hashes;
//! - ring links: each legacy holder is linked again under the hashed key through the same
//!   union-find as an observation (so a legacy ring and a ring formed since under the hash
//!   merge), then the legacy key goes;
//! - assessments: explanations that named personal data are rewritten and plaintext ring
//!   links in their snapshots hashed ([`scrub_assessment`]).
//!
//! The recipient keys invite-svc's events carried before issue #16 (an unkeyed SHA-256) cannot
//! be converted without the address; they age out of the 30-day recipient window.

use crate::{
    app::{
        observe_person::link_in,
        privacy::{rehash_link, scrub_assessment},
    },
    store::{REFEREE, Store, StoreResult},
};

/// Rows per kind per transaction.
const BATCH: i64 = 500;

/// Converts every row written before encryption; how many it converted.
pub async fn reencrypt<S: Store>(store: &S) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let mut tx = store.begin_assessment().await?;
        let mut n = store.reencrypt_facts(&mut tx, BATCH).await?;
        let legacy = store.legacy_link_holders(&mut tx, BATCH).await?;
        let at = referral_common::ids::now();
        for (link, member) in &legacy {
            let hashed = rehash_link(store.pii(), link);
            link_in(store, &mut tx, member, REFEREE, std::slice::from_ref(&hashed), at).await?;
            store.drop_legacy_link(&mut tx, link, member).await?;
            n += 1;
        }
        store.commit(tx, false).await?;
        total += n;
        if n == 0 {
            break;
        }
    }
    let mut after = String::new();
    loop {
        let mut tx = store.begin_assessment().await?;
        let page = store.assessments_after(&mut tx, &after, BATCH).await?;
        for row in &page {
            let mut kept = row.clone();
            scrub_assessment(&mut kept, None, Some(store.pii()))?;
            if &kept != row {
                store.rewrite_assessment(&mut tx, &kept).await?;
                total += 1;
            }
        }
        store.commit(tx, false).await?;
        match page.last() {
            Some(last) if page.len() as i64 == BATCH => after = last.id.clone(),
            _ => break,
        }
    }
    Ok(total)
}
