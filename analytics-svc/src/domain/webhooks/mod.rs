//! Outbound webhooks' rules (docs/api.md, analytics-svc): when a failed delivery is retried
//! or an endpoint disabled (`retry`), how a delivery is signed per Standard Webhooks
//! (`signing`), which targets a delivery may reach (`target`, the SSRF guard), and which
//! endpoints want an event ([`subscribed`]).

pub mod retry;
pub mod signing;
pub mod target;

/// Does an endpoint subscribed to `types` want an event of type `event_type`?
pub fn subscribed(types: &[String], event_type: &str) -> bool {
    types.iter().any(|t| t == "*" || t == event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_by_name_or_star() {
        let types = vec!["invitation.created".to_string()];
        assert!(subscribed(&types, "invitation.created"));
        assert!(!subscribed(&types, "invitation.sent"));
        assert!(subscribed(&["*".to_string()], "payout.paid"));
        assert!(!subscribed(&[], "payout.paid"));
    }
}
