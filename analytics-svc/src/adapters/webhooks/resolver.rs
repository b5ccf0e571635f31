//! The delivery client's resolver: system DNS, then the SSRF guard
//! (`domain::webhooks::target`) on every address a host name resolves to, so a name that
//! later points inside is refused too.

use std::{net::SocketAddr, sync::Arc};

use crate::domain::webhooks::target::TargetPolicy;

/// reqwest's resolver for webhook deliveries: system DNS, then the guard on every address.
pub struct GuardedResolver {
    pub policy: Arc<TargetPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = policy.filter_resolved(&host, addrs)?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_resolver_refuses_localhost_unless_allowed() {
        use reqwest::dns::Resolve;
        let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
        let strict = GuardedResolver {
            policy: Arc::new(TargetPolicy::default()),
        };
        assert!(strict.resolve(name()).await.is_err());
        let allowing = GuardedResolver {
            policy: Arc::new(TargetPolicy::allowing(vec![
                "127.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ])),
        };
        let addrs: Vec<SocketAddr> = allowing.resolve(name()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
