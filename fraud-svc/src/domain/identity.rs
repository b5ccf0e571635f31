//! Who a party is, in comparable form: normalised e-mail addresses, names, the pseudonymous
//! recipient key, disposable domains, and the keys (shared IP, device, e-mail) that link
//! people into fraud rings.

use std::{collections::HashSet, net::IpAddr, sync::OnceLock};

use referral_common::pii::PiiKeys;

/// Domains that are one Gmail mailbox whatever dots or `+tag` the local part carries.
const GMAIL_DOMAINS: [&str; 2] = ["gmail.com", "googlemail.com"];

/// The canonical identity of an e-mail address, the same one invite-svc uses: trimmed and
/// lower-cased, `+tag` removed, and for Gmail the dots removed and googlemail.com mapped to
/// gmail.com. `None` for anything that is not `local@domain`.
pub fn normalize_email(input: &str) -> Option<String> {
    let lower = input.trim().to_lowercase();
    let (local, domain) = lower.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') || lower.chars().any(char::is_whitespace)
    {
        return None;
    }
    let untagged = local.split_once('+').map_or(local, |(base, _)| base);
    let (local, domain) = if GMAIL_DOMAINS.contains(&domain) {
        (untagged.replace('.', ""), "gmail.com")
    } else {
        (untagged.to_string(), domain)
    };
    if local.is_empty() {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// The part before the `@` of a normalised address.
pub fn email_local(normalized: &str) -> &str {
    normalized.split_once('@').map_or(normalized, |(local, _)| local)
}

/// The part after the `@` of a normalised address (`""` without one).
pub fn email_domain(normalized: &str) -> &str {
    normalized.rsplit_once('@').map_or("", |(_, domain)| domain)
}

/// A name for comparison: lower-cased, runs of whitespace as one space.
pub fn normalize_name(input: &str) -> String {
    input
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The pseudonymous key of a recipient, computed exactly as invite-svc's events carry it
/// (`InvitationCreated.recipient_key`): the keyed hash (`PiiKeys::lookup`, the mesh's one
/// PII_LOOKUP_KEY) of the normalised e-mail, or of the normalised phone number when there
/// is no e-mail; nobody without the key can test an address against it. Windows counted from a synchronous
/// `AssessInvitation` and from the event log therefore meet on the same key, and fraud-svc
/// never stores a recipient's address.
pub fn recipient_key(pii: &PiiKeys, email_normalized: &str, phone: &str) -> String {
    if email_normalized.is_empty() {
        pii.lookup("phone", phone.trim())
    } else {
        pii.lookup("email", email_normalized)
    }
}

/// The disposable-domain list shipped by the `mailchecker` crate, as a set (the crate's own
/// `is_valid` scans its list linearly, too slow for every assessment).
fn disposable_domains() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| mailchecker::blacklist().into_iter().collect())
}

/// Whether a normalised address is at a disposable domain or a subdomain of one
/// (`x@mailinator.com`, `x@eu.mailinator.com`). Returns the listed domain.
pub fn disposable_domain(email_normalized: &str) -> Option<&str> {
    let domain = email_domain(email_normalized);
    if domain.is_empty() {
        return None;
    }
    let set = disposable_domains();
    // The domain itself and each parent that still has a dot (never a bare TLD).
    let mut candidate = domain;
    loop {
        if set.contains(candidate) {
            return Some(candidate);
        }
        match candidate.split_once('.') {
            Some((_, parent)) if parent.contains('.') => candidate = parent,
            _ => return None,
        }
    }
}

/// Addresses that identify our own network rather than a person: loopback, unspecified,
/// private (RFC 1918 / unique-local) and link-local. Behind a proxy that is not trusted
/// every caller shows one of these, so they must not link strangers into one ring.
pub fn is_non_public_ip(ip: &str) -> bool {
    match ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            v4.is_loopback() || v4.is_unspecified() || v4.is_private() || v4.is_link_local()
        }
        Ok(IpAddr::V6(v6)) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.is_loopback() || v4.is_unspecified() || v4.is_private() || v4.is_link_local();
            }
            v6.is_loopback() || v6.is_unspecified() || v6.is_unique_local() || v6.is_unicast_link_local()
        }
        // Not an address we can classify: an opaque key like any other.
        Err(_) => false,
    }
}

/// The keys that link a person to others into a fraud ring: `ip:…`, `device:…`,
/// `email:…` (each only when known). Non-public IPs are left out when `ignore_non_public`.
pub fn link_keys(email_normalized: &str, ip: &str, device_id: &str, ignore_non_public: bool) -> Vec<String> {
    let mut keys = Vec::with_capacity(3);
    let ip = ip.trim();
    let skip_ip = ip.is_empty() || (ignore_non_public && is_non_public_ip(ip));
    if !skip_ip {
        keys.push(format!("ip:{ip}"));
    }
    let device = device_id.trim();
    if !device.is_empty() {
        keys.push(format!("device:{device}"));
    }
    if !email_normalized.is_empty() {
        keys.push(format!("email:{email_normalized}"));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_like_invite_svc() {
        assert_eq!(
            normalize_email("  Anna.Smith+wedding@Example.COM ").as_deref(),
            Some("anna.smith@example.com")
        );
        assert_eq!(
            normalize_email("a.n.n.a@googlemail.com").as_deref(),
            Some("anna@gmail.com")
        );
        assert_eq!(normalize_email("no-at-sign"), None);
        assert_eq!(normalize_email("+tag@example.com"), None);
        assert_eq!(normalize_email("a@b@c"), None);
        assert_eq!(email_local("anna.smith1@example.com"), "anna.smith1");
        assert_eq!(email_domain("anna.smith1@example.com"), "example.com");
    }

    #[test]
    fn names_compare_without_case_or_spacing() {
        assert_eq!(normalize_name("  Anna   SMITH "), "anna smith");
        assert_eq!(normalize_name(""), "");
    }

    #[test]
    fn recipient_key_matches_invite_svc_events() {
        // invite-svc: PiiKeys::lookup("email" | "phone", normalised recipient).
        let pii = PiiKeys::for_tests();
        assert_eq!(
            recipient_key(&pii, "sam@example.com", ""),
            pii.lookup("email", "sam@example.com")
        );
        assert_eq!(
            recipient_key(&pii, "", "+447700900123"),
            pii.lookup("phone", "+447700900123")
        );
        assert_eq!(recipient_key(&pii, "", ""), "");
    }

    #[test]
    fn disposable_domains_come_from_the_maintained_list() {
        assert_eq!(disposable_domain("x@mailinator.com"), Some("mailinator.com"));
        assert_eq!(disposable_domain("x@eu.mailinator.com"), Some("mailinator.com"));
        assert_eq!(disposable_domain("x@yopmail.com"), Some("yopmail.com"));
        assert_eq!(disposable_domain("x@gmail.com"), None);
        assert_eq!(disposable_domain("x@example.com"), None);
        assert_eq!(disposable_domain(""), None);
    }

    #[test]
    fn our_own_network_does_not_link_strangers() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "172.16.5.5",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "0.0.0.0",
        ] {
            assert!(is_non_public_ip(ip), "{ip}");
        }
        for ip in ["203.0.113.7", "81.2.69.160", "2001:db8::1", "not-an-ip"] {
            assert!(!is_non_public_ip(ip), "{ip}");
        }
        assert_eq!(
            link_keys("a@example.com", "203.0.113.7", "dev-1", true),
            vec!["ip:203.0.113.7", "device:dev-1", "email:a@example.com"]
        );
        assert_eq!(link_keys("", "127.0.0.1", "", true), Vec::<String>::new());
        assert_eq!(link_keys("", "127.0.0.1", "", false), vec!["ip:127.0.0.1"]);
    }
}
