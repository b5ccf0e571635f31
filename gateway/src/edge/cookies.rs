//! Reading one cookie from a request's `Cookie` headers (RFC 6265 §5.4: `name=value`
//! pairs separated by `; `, possibly spread over several headers under HTTP/2).

use http::{HeaderMap, header};

/// The first value of cookie `name`, unquoted; `None` when absent, empty or unreadable.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_named_cookie_among_others() {
        let h = headers(&["a=1; rm_click=c1.k1.LOVE-X.1.n.m; b=2"]);
        assert_eq!(get(&h, "rm_click").as_deref(), Some("c1.k1.LOVE-X.1.n.m"));
        let h = headers(&["a=1", "rm_click=\"quoted\""]);
        assert_eq!(get(&h, "rm_click").as_deref(), Some("quoted"));
        assert_eq!(get(&headers(&["xrm_click=1; rm_clickx=2"]), "rm_click"), None);
        assert_eq!(get(&headers(&["rm_click="]), "rm_click"), None);
        assert_eq!(get(&HeaderMap::new(), "rm_click"), None);
    }
}
