//! Who a party is, in comparable form: normalised e-mail addresses, names, the contact a
//! recipient is looked up by, disposable domains, what the rules need of an address
//! ([`EmailTraits`]), and the keys (shared IP, device, e-mail) that link people into fraud
//! rings.
//!
//! fraud-svc keeps no plaintext personal data (issue #16). What each rule needs, derived at
//! ingest:
//! - equality (same IP, same device, same e-mail, rings, a recipient's referrers, the
//!   referrer's own e-mail or device): the keyed hash `PiiKeys::lookup(kind, canonical)`
//!   (kinds "email", "phone", "ip", "device"), the same key across the mesh;
//! - disposable e-mail: the listed disposable domain the address is at, or nothing (a public
//!   throw-away service, not a person);
//! - similarity (edit distance of e-mail local parts and names): the local part and the
//!   normalised name, sealed (`PiiKeys::seal`) and opened only inside an assessment;
//! - non-public IPs are dropped before hashing (they link nobody).

use std::{collections::HashSet, net::IpAddr, sync::OnceLock};

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

/// The contact a recipient is looked up by, as `(kind, canonical value)` for
/// `PiiKeys::lookup` — exactly what invite-svc's events carry as
/// `InvitationCreated.recipient_key`: the normalised e-mail ("email"), or the phone number
/// ("phone") when there is no e-mail; `None` without either. Windows counted from a
/// synchronous `AssessInvitation` and from the event log therefore meet on the same key.
pub fn recipient_contact<'a>(email_normalized: &'a str, phone: &'a str) -> Option<(&'static str, &'a str)> {
    if !email_normalized.is_empty() {
        return Some(("email", email_normalized));
    }
    let phone = phone.trim();
    (!phone.is_empty()).then_some(("phone", phone))
}

/// What the rules need of an e-mail address, derived from it at ingest: whether there was
/// one, its local part (similarity; sealed at rest) and the disposable domain it is at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailTraits {
    pub known: bool,
    pub local: String,
    /// The listed disposable domain (`mailinator.com`), if the address is at one.
    pub disposable: Option<String>,
}

impl EmailTraits {
    /// The traits of a normalised address (empty: none known).
    pub fn of(email_normalized: &str) -> EmailTraits {
        if email_normalized.is_empty() {
            return EmailTraits::default();
        }
        EmailTraits {
            known: true,
            local: email_local(email_normalized).to_string(),
            disposable: disposable_domain(email_normalized).map(str::to_string),
        }
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

/// The IP that may link people into a ring: `ip` trimmed, or empty when it is empty or (with
/// `ignore_non_public`) loopback, private or link-local.
pub fn ring_ip(ip: &str, ignore_non_public: bool) -> &str {
    let ip = ip.trim();
    if ip.is_empty() || (ignore_non_public && is_non_public_ip(ip)) {
        ""
    } else {
        ip
    }
}

/// The keys that link a person to others into a fraud ring, from the keyed hashes of their
/// IP (see [`ring_ip`]), device and e-mail: `ip:…`, `device:…`, `email:…`, each only when
/// known. Shown in cluster views: hashes, never an address.
pub fn link_keys(email_key: &str, ip_key: &str, device_key: &str) -> Vec<String> {
    [("ip", ip_key), ("device", device_key), ("email", email_key)]
        .into_iter()
        .filter(|(_, k)| !k.is_empty())
        .map(|(kind, k)| format!("{kind}:{k}"))
        .collect()
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
    fn recipients_are_looked_up_by_email_else_phone() {
        assert_eq!(
            recipient_contact("sam@example.com", "+447700900123"),
            Some(("email", "sam@example.com"))
        );
        assert_eq!(
            recipient_contact("", " +447700900123 "),
            Some(("phone", "+447700900123"))
        );
        assert_eq!(recipient_contact("", ""), None);
    }

    #[test]
    fn email_traits_keep_what_the_rules_need() {
        let t = EmailTraits::of("anna.smith1@eu.mailinator.com");
        assert!(t.known);
        assert_eq!(t.local, "anna.smith1");
        assert_eq!(t.disposable.as_deref(), Some("mailinator.com"));
        assert_eq!(EmailTraits::of("sam@example.com").disposable, None);
        assert_eq!(EmailTraits::of(""), EmailTraits::default());
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
        assert_eq!(ring_ip(" 203.0.113.7 ", true), "203.0.113.7");
        assert_eq!(ring_ip("127.0.0.1", true), "");
        assert_eq!(ring_ip("127.0.0.1", false), "127.0.0.1");
        assert_eq!(
            link_keys("e1", "i1", "d1"),
            vec!["ip:i1", "device:d1", "email:e1"]
        );
        assert_eq!(link_keys("", "", ""), Vec::<String>::new());
    }
}
