//! Fraud rings as a union-find: people are linked by shared keys (`ip:…`, `device:…`,
//! `email:…`); everyone connected through keys is one cluster. The store persists
//! person → cluster and key → cluster; this module decides, purely, what one observation of
//! a person with some keys changes (weighted union: smaller clusters merge into the largest,
//! so a member moves O(log n) times over its life).

use super::ClusterSize;

/// Where the person and the keys end up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An existing cluster (the largest involved).
    Existing(String),
    /// Nobody involved has a cluster yet: a new one.
    New,
}

/// What one observation changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnionPlan {
    pub target: Target,
    /// Other clusters whose members and links move into the target, then disappear.
    pub merge: Vec<String>,
    /// The person joins the target (they had no cluster).
    pub add_person: bool,
    /// Keys seen for the first time: new links of the target, one holder each.
    pub new_links: Vec<String>,
    /// Keys that already linked someone: one more holder now.
    pub more_holders: Vec<String>,
    /// The target's size afterwards.
    pub size: u32,
}

/// Plans the union of `person` (in `person_cluster`, if any) with the keys they were seen
/// with for the first time: `keyed` are those keys that already belong to a cluster, the
/// rest of `first_time_keys` are new. `None` when nothing changes.
pub fn plan_union(
    person_cluster: Option<&ClusterSize>,
    first_time_keys: &[String],
    keyed: &[(String, ClusterSize)],
) -> Option<UnionPlan> {
    if first_time_keys.is_empty() {
        return None;
    }
    // Every distinct cluster involved, the person's first.
    let mut involved: Vec<&ClusterSize> = Vec::new();
    for c in person_cluster.into_iter().chain(keyed.iter().map(|(_, c)| c)) {
        if !involved.iter().any(|seen| seen.id == c.id) {
            involved.push(c);
        }
    }
    // The largest absorbs the rest (the earliest listed wins a tie: no needless moves).
    let largest = involved
        .iter()
        .copied()
        .reduce(|best, c| if c.size > best.size { c } else { best });
    let merge: Vec<String> = involved
        .iter()
        .filter(|c| largest.is_some_and(|l| l.id != c.id))
        .map(|c| c.id.clone())
        .collect();
    let add_person = person_cluster.is_none();
    let size = involved.iter().map(|c| c.size).fold(0u32, u32::saturating_add) + u32::from(add_person);
    let new_links = first_time_keys
        .iter()
        .filter(|k| !keyed.iter().any(|(key, _)| key == *k))
        .cloned()
        .collect();
    let more_holders = keyed.iter().map(|(k, _)| k.clone()).collect();
    Some(UnionPlan {
        target: largest.map_or(Target::New, |l| Target::Existing(l.id.clone())),
        merge,
        add_person,
        new_links,
        more_holders,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, size: u32) -> ClusterSize {
        ClusterSize { id: id.into(), size }
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_stranger_with_new_keys_starts_a_cluster() {
        let plan = plan_union(None, &keys(&["ip:a", "device:d"]), &[]).unwrap();
        assert_eq!(plan.target, Target::New);
        assert!(plan.add_person && plan.merge.is_empty());
        assert_eq!(plan.new_links, keys(&["ip:a", "device:d"]));
        assert_eq!(plan.size, 1);
    }

    #[test]
    fn a_stranger_sharing_a_key_joins_its_cluster() {
        let plan = plan_union(None, &keys(&["ip:a", "device:d"]), &[("ip:a".into(), c("c1", 4))]).unwrap();
        assert_eq!(plan.target, Target::Existing("c1".into()));
        assert_eq!(plan.new_links, keys(&["device:d"]));
        assert_eq!(plan.more_holders, keys(&["ip:a"]));
        assert_eq!(plan.size, 5);
    }

    #[test]
    fn a_bridge_merges_smaller_clusters_into_the_largest() {
        let plan = plan_union(
            Some(&c("mine", 2)),
            &keys(&["ip:a", "device:d"]),
            &[("ip:a".into(), c("big", 7)), ("device:d".into(), c("small", 3))],
        )
        .unwrap();
        assert_eq!(plan.target, Target::Existing("big".into()));
        assert_eq!(plan.merge, vec!["mine".to_string(), "small".to_string()]);
        assert!(!plan.add_person);
        assert_eq!(plan.size, 12);
    }

    #[test]
    fn a_key_already_in_my_cluster_only_counts_a_holder() {
        let plan = plan_union(
            Some(&c("mine", 3)),
            &keys(&["ip:a"]),
            &[("ip:a".into(), c("mine", 3))],
        )
        .unwrap();
        assert_eq!(plan.target, Target::Existing("mine".into()));
        assert!(plan.merge.is_empty() && !plan.add_person && plan.new_links.is_empty());
        assert_eq!(plan.more_holders, keys(&["ip:a"]));
        assert_eq!(plan.size, 3);
        // Nothing first-time: nothing to do.
        assert_eq!(plan_union(Some(&c("mine", 3)), &[], &[]), None);
    }
}
