//! `LANDING_HOSTS`: the hosts a referral link may send visitors to. Checked by invite-svc
//! when a code or invitation names a `landingUrl`, and by the gateway at redirect time, from
//! the same setting, so an open redirect cannot be created nor followed.

/// A parsed allowlist. The host of `DEFAULT_LANDING_URL` is always in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LandingHosts {
    /// Exact host names (lower case, no trailing dot).
    exact: Vec<String>,
    /// `*.example.com` entries, kept as `.example.com`: any subdomain, not the apex.
    suffixes: Vec<String>,
}

fn normalise(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl LandingHosts {
    /// `list` is comma-separated: `example.com, *.example.org`. An entry that is not a host
    /// name is an error naming it (a typo must not silently allow nothing or everything).
    pub fn parse(list: &str, default_landing_url: &str) -> Result<Self, String> {
        let mut hosts = LandingHosts::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (wildcard, name) = match entry.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, entry),
            };
            // The url crate decides what a host is (IDNA, IP literals), not a hand-made rule.
            let parsed = url::Url::parse(&format!("http://{name}/"))
                .ok()
                .and_then(|u| u.host_str().map(normalise))
                .filter(|h| !h.is_empty() && !h.contains('*') && *h == normalise(name));
            let Some(host) = parsed else {
                return Err(format!("{entry:?} is not a host name (or *.host)"));
            };
            if wildcard {
                hosts.suffixes.push(format!(".{host}"));
            } else {
                hosts.exact.push(host);
            }
        }
        let default = url::Url::parse(default_landing_url)
            .map_err(|e| format!("DEFAULT_LANDING_URL {default_landing_url:?}: {e}"))?;
        match default.host_str() {
            Some(h) => hosts.exact.push(normalise(h)),
            None => return Err(format!("DEFAULT_LANDING_URL {default_landing_url:?} has no host")),
        }
        Ok(hosts)
    }

    /// Whether a landing URL's host is allowed.
    pub fn allows(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str().map(normalise) else {
            return false;
        };
        self.exact.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(hosts: &LandingHosts, u: &str) -> bool {
        hosts.allows(&url::Url::parse(u).unwrap())
    }

    #[test]
    fn the_default_host_is_always_allowed_and_others_must_be_listed() {
        let hosts = LandingHosts::parse("", "https://example.com/join").unwrap();
        assert!(allows(&hosts, "https://EXAMPLE.com./other?x#y"));
        assert!(!allows(&hosts, "https://evil.com/"));
        assert!(!allows(&hosts, "https://example.com.evil.com/"));
        assert!(!allows(&hosts, "https://evil.com/?https://example.com"));
        assert!(!allows(&hosts, "https://example.com@evil.com/"));
    }

    #[test]
    fn listed_and_wildcard_hosts() {
        let hosts = LandingHosts::parse(" weddings.test , *.Venues.test ", "https://example.com/").unwrap();
        assert!(allows(&hosts, "https://weddings.test/a"));
        assert!(allows(&hosts, "http://a.b.venues.test/"));
        assert!(
            !allows(&hosts, "https://venues.test/"),
            "a wildcard is subdomains only"
        );
        assert!(!allows(&hosts, "https://evilvenues.test/"));
        assert!(!allows(&hosts, "https://sub.weddings.test/"));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["https://x.com", "x.com/path", "*", "a*.b.com", "x y"] {
            let err = LandingHosts::parse(bad, "https://example.com/").unwrap_err();
            assert!(err.contains(bad.trim()), "{err}");
        }
        assert!(LandingHosts::parse("", "not a url").is_err());
    }
}
