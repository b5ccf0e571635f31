//! Where `/r/{code}` sends a visitor: the landing URL, if its host is allowed, with the
//! click id added as a query parameter so the landing page (another origin, which can never
//! read the gateway's cookie) learns it.

use referral_common::landing::LandingHosts;

/// `landing` with `param=click_id` appended to its query — path, the existing query and the
/// fragment kept as they are — or `None` when it is not an absolute http(s) URL that
/// `hosts` (`LANDING_HOSTS`, the rule invite-svc applies at creation) allows.
pub fn with_click(landing: &str, hosts: &LandingHosts, param: &str, click_id: &str) -> Option<String> {
    let mut url = url::Url::parse(landing.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    if !hosts.allows(&url) {
        return None;
    }
    // Appends to the query string as it is: earlier parameters are not re-encoded.
    url.query_pairs_mut().append_pair(param, click_id);
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> LandingHosts {
        LandingHosts::parse("www.example.com", "https://join.example.com/start").unwrap()
    }

    #[test]
    fn the_click_id_joins_the_query_and_everything_else_stays() {
        let cases = [
            (
                "https://www.example.com/signup",
                "https://www.example.com/signup?rm_click=c1.k.X.1.n.m",
            ),
            (
                "https://www.example.com/",
                "https://www.example.com/?rm_click=c1.k.X.1.n.m",
            ),
            (
                "https://www.example.com/signup?ref=abc&x=a%20b#plans",
                "https://www.example.com/signup?ref=abc&x=a%20b&rm_click=c1.k.X.1.n.m#plans",
            ),
            (
                "https://WWW.Example.com:8443/a/b?#top",
                "https://www.example.com:8443/a/b?rm_click=c1.k.X.1.n.m#top",
            ),
        ];
        for (landing, want) in cases {
            assert_eq!(
                with_click(landing, &hosts(), "rm_click", "c1.k.X.1.n.m").as_deref(),
                Some(want),
                "{landing}"
            );
        }
        assert_eq!(
            with_click("https://join.example.com/x", &hosts(), "ref_click", "id").as_deref(),
            Some("https://join.example.com/x?ref_click=id")
        );
    }

    #[test]
    fn other_hosts_and_schemes_are_refused() {
        for landing in [
            "https://evil.example/signup",
            "https://www.example.com.evil.example/",
            "https://user:pw@www.example.com/",
            "javascript:alert(1)",
            "ftp://www.example.com/",
            "/relative",
            "",
        ] {
            assert_eq!(with_click(landing, &hosts(), "rm_click", "id"), None, "{landing}");
        }
    }
}
