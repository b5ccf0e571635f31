//! `manifest.json`: what a backup holds and how to check it — the format version, the
//! binary that took it, each store's applied migrations, event-log head and consumer
//! offsets (read inside the very snapshot that was copied), the SHA-256 of every file.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The manifest format this binary writes and reads.
pub const FORMAT_VERSION: u64 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
/// A manifest is a few kilobytes; anything far larger is not one.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u64,
    /// The `referral-mesh` version that took the backup.
    pub referral_mesh_version: String,
    pub created_at: DateTime<Utc>,
    /// How the four separate databases fit together (for a reader of the file).
    pub consistency: String,
    /// By store name (invite, fraud, incentive, analytics).
    pub stores: BTreeMap<String, StoreInfo>,
    /// Every file of the backup but this one, by name.
    pub files: BTreeMap<String, FileInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreInfo {
    /// The database file in the backup (`{store}.db`).
    pub file: String,
    /// Position in the snapshot order (0 first): consumers before their producers.
    pub snapshot_order: u32,
    /// The versions in `_sqlx_migrations`, ascending.
    pub migrations: Vec<i64>,
    /// The highest offset the store's event log had numbered (0: none).
    pub event_log_head: i64,
    /// The store's consumers: the last offset applied per source log.
    pub consumer_offsets: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileInfo {
    pub sha256: String,
    pub bytes: u64,
}

/// What `consistency` says in every manifest.
pub const CONSISTENCY: &str = "Each store is copied from one read transaction (SQLite's online backup API). The snapshots are taken consumers first, producers last, and every consumer's offset is checked to be at or below its producer's event-log head in the same backup (retried until it is): after a restore a consumer behind its producer catches up from its own recorded offset, dropping events it already applied by id; none is ever ahead of the log it reads.";

/// Each consumer's offset against its producer's head: `Err` names the first consumer
/// that is ahead (it would skip the events its producer numbers next after a restore).
pub fn check_consistency(stores: &BTreeMap<String, StoreInfo>) -> Result<(), String> {
    for (consumer, info) in stores {
        for (source, offset) in &info.consumer_offsets {
            let Some(producer) = stores.get(source) else {
                continue;
            };
            if *offset > producer.event_log_head {
                return Err(format!(
                    "{consumer}'s consumer of the {source} log is at offset {offset}, ahead of {source}'s event-log head {} in the same backup",
                    producer.event_log_head
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(head: i64, offsets: &[(&str, i64)]) -> StoreInfo {
        StoreInfo {
            file: String::new(),
            snapshot_order: 0,
            migrations: vec![],
            event_log_head: head,
            consumer_offsets: offsets.iter().map(|(s, o)| (s.to_string(), *o)).collect(),
        }
    }

    #[test]
    fn a_consumer_behind_or_at_its_producer_is_consistent_and_one_ahead_is_not() {
        let mut stores = BTreeMap::from([
            ("invite".to_string(), store(10, &[("fraud", 3)])),
            ("fraud".to_string(), store(3, &[("invite", 10)])),
            (
                "analytics".to_string(),
                store(0, &[("invite", 7), ("elsewhere", 99)]),
            ),
        ]);
        assert_eq!(check_consistency(&stores), Ok(()));
        stores
            .get_mut("analytics")
            .unwrap()
            .consumer_offsets
            .insert("fraud".into(), 4);
        let err = check_consistency(&stores).unwrap_err();
        assert!(
            err.contains("analytics's consumer of the fraud log is at offset 4"),
            "{err}"
        );
    }

    #[test]
    fn the_manifest_round_trips_and_refuses_unknown_fields() {
        let m = Manifest {
            format_version: FORMAT_VERSION,
            referral_mesh_version: "0.1.0".into(),
            created_at: Utc::now(),
            consistency: CONSISTENCY.into(),
            stores: BTreeMap::from([("invite".into(), store(1, &[]))]),
            files: BTreeMap::from([(
                "invite.db".into(),
                FileInfo {
                    sha256: "00".into(),
                    bytes: 1,
                },
            )]),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains("\"formatVersion\":1"), "{text}");
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
        let extra = text.replacen('{', "{\"surprise\":1,", 1);
        assert!(serde_json::from_str::<Manifest>(&extra).is_err());
    }
}
