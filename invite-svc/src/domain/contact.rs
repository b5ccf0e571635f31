//! Recipient contact details in one canonical form, so "the same recipient" means the same
//! thing to duplicate detection, fraud's self-referral rule and attribution by email.
//!
//! The canonical form is an identity key, not a delivery address: messages go to the address
//! as the person typed it (trimmed), which is why callers keep both.

use super::shown;

/// Longest email address we accept (RFC 5321's path limit, less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// Longest part before the `@` (RFC 5321).
const MAX_EMAIL_LOCAL_LEN: usize = 64;

/// Longest domain label (RFC 1035).
const MAX_DOMAIN_LABEL_LEN: usize = 63;

/// Characters that never appear unquoted before the `@`; seeing one usually means a pasted
/// `Name <address>` or a list of addresses.
const FORBIDDEN_IN_LOCAL: &[char] = &['"', '(', ')', ',', ':', ';', '<', '>', '[', ']', '\\'];

/// Domains that are one Gmail mailbox whatever dots or `+tag` the local part carries.
const GMAIL_DOMAINS: [&str; 2] = ["gmail.com", "googlemail.com"];
const GMAIL_CANONICAL_DOMAIN: &str = "gmail.com";

/// Digits in a full international number, country code included (E.164 allows 15).
pub const MIN_PHONE_DIGITS: usize = 8;
pub const MAX_PHONE_DIGITS: usize = 15;

/// Country code assumed for numbers written without one: the marketplace is UK-first.
const DEFAULT_COUNTRY_CODE: &str = "44";

/// Longer input is not a phone number, whatever its formatting.
const MAX_PHONE_INPUT_LEN: usize = 40;

/// Why an email address or phone number was refused, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    #[error("invalid email address: {0}")]
    Email(String),
    #[error("invalid phone number: {0}")]
    Phone(String),
}

fn email_error(message: impl Into<String>) -> ContactError {
    ContactError::Email(message.into())
}

fn phone_error(message: impl Into<String>) -> ContactError {
    ContactError::Phone(message.into())
}

/// The canonical identity of an email address: trimmed and lower-cased, with the `+tag`
/// removed (`anna+wedding@example.com` is Anna), and for Gmail also the dots removed and
/// googlemail.com mapped to gmail.com, because Gmail delivers all of those to one inbox.
pub fn normalize_email(input: &str) -> Result<String, ContactError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(email_error("it is empty"));
    }
    if trimmed.len() > MAX_EMAIL_LEN {
        return Err(email_error(format!(
            "it is longer than {MAX_EMAIL_LEN} characters"
        )));
    }
    if trimmed.chars().any(char::is_whitespace) {
        return Err(email_error("it contains a space"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(email_error("it contains a control character"));
    }
    let lower = trimmed.to_lowercase();
    let Some((local, domain)) = lower.split_once('@') else {
        return Err(email_error(format!("`{}` has no @", shown(trimmed))));
    };
    if domain.contains('@') {
        return Err(email_error("it has more than one @"));
    }
    check_email_local_part(local)?;
    check_email_domain(domain)?;
    let (local, domain) = canonical_mailbox(local, domain);
    if local.is_empty() {
        return Err(email_error(
            "nothing is left before the @ once what the mail provider ignores (+tag, Gmail dots) is removed",
        ));
    }
    Ok(format!("{local}@{domain}"))
}

/// The domain of a normalised address (`""` if it has no `@`).
pub fn email_domain(normalized: &str) -> &str {
    normalized.rsplit_once('@').map_or("", |(_, domain)| domain)
}

fn check_email_local_part(local: &str) -> Result<(), ContactError> {
    if local.is_empty() {
        return Err(email_error("nothing comes before the @"));
    }
    if local.len() > MAX_EMAIL_LOCAL_LEN {
        return Err(email_error(format!(
            "the part before the @ is longer than {MAX_EMAIL_LOCAL_LEN} characters"
        )));
    }
    if let Some(c) = local.chars().find(|c| FORBIDDEN_IN_LOCAL.contains(c)) {
        return Err(email_error(format!("the part before the @ contains `{c}`")));
    }
    Ok(())
}

fn check_email_domain(domain: &str) -> Result<(), ContactError> {
    if domain.is_empty() {
        return Err(email_error("nothing comes after the @"));
    }
    if !domain.contains('.') {
        return Err(email_error(format!("the domain `{}` has no dot", shown(domain))));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(email_error(format!(
                "the domain `{}` has an empty part between dots",
                shown(domain)
            )));
        }
        if label.len() > MAX_DOMAIN_LABEL_LEN {
            return Err(email_error(format!(
                "a part of the domain is longer than {MAX_DOMAIN_LABEL_LEN} characters"
            )));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_alphanumeric() || *c == '-')) {
            return Err(email_error(format!("the domain contains `{c}`")));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(email_error(format!(
                "the domain part `{}` starts or ends with a hyphen",
                shown(label)
            )));
        }
    }
    let top_level = email_domain_top_level(domain);
    if top_level.chars().count() < 2 || top_level.chars().all(|c| c.is_ascii_digit()) {
        return Err(email_error(format!(
            "`{}` is not a top-level domain",
            shown(top_level)
        )));
    }
    Ok(())
}

fn email_domain_top_level(domain: &str) -> &str {
    domain.rsplit('.').next().unwrap_or(domain)
}

/// Removes what the mail provider ignores when delivering, so two spellings of one inbox
/// compare equal.
fn canonical_mailbox<'a>(local: &str, domain: &'a str) -> (String, &'a str) {
    let untagged = local.split_once('+').map_or(local, |(base, _tag)| base);
    if GMAIL_DOMAINS.contains(&domain) {
        (untagged.replace('.', ""), GMAIL_CANONICAL_DOMAIN)
    } else {
        (untagged.to_owned(), domain)
    }
}

/// An E.164-style `+<digits>` number. Spaces, dashes, dots and parentheses are formatting;
/// `00` is the international prefix; a number written without a country code is taken to be
/// British (its leading trunk `0` replaced by `+44`), as is a bare number starting with `44`
/// (no British national number starts with 4, so that is the country code without its `+`).
/// The trunk `0` that people write after a country code, as in `+44 (0)20 …` or
/// `+44 07700 …`, is dropped.
pub fn normalize_phone(input: &str) -> Result<String, ContactError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(phone_error("it is empty"));
    }
    if trimmed.chars().count() > MAX_PHONE_INPUT_LEN {
        return Err(phone_error(format!(
            "it is longer than {MAX_PHONE_INPUT_LEN} characters"
        )));
    }
    let (has_plus, digits) = phone_digits(&trimmed.replace("(0)", ""))?;
    let international = with_country_code(has_plus, &digits);
    let international = match international.strip_prefix("440") {
        Some(national) => format!("{DEFAULT_COUNTRY_CODE}{national}"),
        None => international,
    };
    if international.starts_with('0') {
        return Err(phone_error("a country code never starts with 0"));
    }
    let count = international.len();
    if !(MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&count) {
        return Err(phone_error(format!(
            "it has {count} digits with the country code; a phone number has \
             {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS}"
        )));
    }
    Ok(format!("+{international}"))
}

/// The digits of a written number, and whether it began with `+`.
fn phone_digits(written: &str) -> Result<(bool, String), ContactError> {
    let mut has_plus = false;
    let mut digits = String::with_capacity(written.len());
    for c in written.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if digits.is_empty() && !has_plus => has_plus = true,
            '+' => return Err(phone_error("`+` may only start the number")),
            '-' | '.' | '(' | ')' => {}
            c if c.is_whitespace() => {}
            c => return Err(phone_error(format!("it contains `{c}`"))),
        }
    }
    if digits.is_empty() {
        return Err(phone_error("it has no digits"));
    }
    Ok((has_plus, digits))
}

/// The number's digits with a country code in front (see [`normalize_phone`]).
fn with_country_code(has_plus: bool, digits: &str) -> String {
    if has_plus || digits.starts_with(DEFAULT_COUNTRY_CODE) {
        digits.to_owned()
    } else if let Some(international) = digits.strip_prefix("00") {
        international.to_owned()
    } else {
        let national = digits.strip_prefix('0').unwrap_or(digits);
        format!("{DEFAULT_COUNTRY_CODE}{national}")
    }
}

/// `text` (a provider's error, a panic message) with every occurrence of the recipient's
/// contacts (compared without ASCII case) replaced by `<recipient>`: such text is logged and
/// stored as a send error or bounce reason, and a provider's "550 <anna@...> unknown" must
/// not carry the address there.
pub fn without_contacts(text: &str, contacts: &[&str]) -> String {
    let mut out = text.to_string();
    for contact in contacts.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        let needle = contact.to_ascii_lowercase();
        let mut result = String::with_capacity(out.len());
        let lower = out.to_ascii_lowercase();
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            result.push_str(&out[from..from + at]);
            result.push_str("<recipient>");
            from += at + needle.len();
        }
        result.push_str(&out[from..]);
        out = result;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn contacts_are_taken_out_of_provider_errors() {
        let text = "550 5.1.1 <Anna@Example.com>: unknown; anna@example.com; +447700900123 failed";
        assert_eq!(
            super::without_contacts(text, &["anna@example.com", "+447700900123", ""]),
            "550 5.1.1 <<recipient>>: unknown; <recipient>; <recipient> failed"
        );
        assert_eq!(super::without_contacts("timeout", &["a@b.c"]), "timeout");
    }

    use super::*;

    fn email_err(input: &str) -> String {
        match normalize_email(input) {
            Err(ContactError::Email(msg)) => msg,
            other => panic!("{input:?}: expected an email error, got {other:?}"),
        }
    }

    fn phone_err(input: &str) -> String {
        match normalize_phone(input) {
            Err(ContactError::Phone(msg)) => msg,
            other => panic!("{input:?}: expected a phone error, got {other:?}"),
        }
    }

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        assert_eq!(
            normalize_email("  Anna.Smith@Example.CO.UK \n").unwrap(),
            "anna.smith@example.co.uk"
        );
    }

    #[test]
    fn email_plus_tag_is_removed_for_every_domain() {
        assert_eq!(
            normalize_email("anna+wedding@example.com").unwrap(),
            "anna@example.com"
        );
        assert_eq!(
            normalize_email("anna+a+b@example.com").unwrap(),
            "anna@example.com"
        );
        assert_eq!(
            normalize_email("first.last+x@outlook.com").unwrap(),
            "first.last@outlook.com"
        );
    }

    #[test]
    fn gmail_dots_and_tags_are_removed_and_googlemail_is_gmail() {
        for input in [
            "John.Doe@gmail.com",
            "johndoe@gmail.com",
            "j.o.h.n.d.o.e+venues@gmail.com",
            "John.Doe@GoogleMail.com",
            "johndoe+x.y@googlemail.com",
        ] {
            assert_eq!(normalize_email(input).unwrap(), "johndoe@gmail.com", "{input}");
        }
    }

    #[test]
    fn dots_are_kept_outside_gmail() {
        assert_eq!(
            normalize_email("john.doe@gmail.co.uk").unwrap(),
            "john.doe@gmail.co.uk"
        );
    }

    #[test]
    fn email_shape_errors_say_what_is_wrong() {
        assert_eq!(email_err(""), "it is empty");
        assert_eq!(email_err("   "), "it is empty");
        assert_eq!(email_err("anna.example.com"), "`anna.example.com` has no @");
        assert_eq!(email_err("anna@b@example.com"), "it has more than one @");
        assert_eq!(email_err("@example.com"), "nothing comes before the @");
        assert_eq!(email_err("anna@"), "nothing comes after the @");
        assert_eq!(email_err("anna@localhost"), "the domain `localhost` has no dot");
        assert_eq!(email_err("anna smith@example.com"), "it contains a space");
        assert_eq!(
            email_err("anna@example..com"),
            "the domain `example..com` has an empty part between dots"
        );
        assert_eq!(
            email_err("anna@.example.com"),
            "the domain `.example.com` has an empty part between dots"
        );
        assert_eq!(
            email_err("anna@example.com."),
            "the domain `example.com.` has an empty part between dots"
        );
        assert_eq!(email_err("anna@exa_mple.com"), "the domain contains `_`");
        assert_eq!(
            email_err("anna@-example.com"),
            "the domain part `-example` starts or ends with a hyphen"
        );
        assert_eq!(email_err("anna@example.c"), "`c` is not a top-level domain");
        assert_eq!(email_err("anna@10.0.0.1"), "`1` is not a top-level domain");
        assert_eq!(email_err("Anna <anna@example.com>"), "it contains a space");
        assert_eq!(
            email_err("<anna@example.com>"),
            "the part before the @ contains `<`"
        );
        assert_eq!(
            email_err("anna\u{7}@example.com"),
            "it contains a control character"
        );
        assert_eq!(
            email_err("+wedding@example.com"),
            "nothing is left before the @ once what the mail provider ignores (+tag, Gmail dots) is removed"
        );
        assert_eq!(
            email_err("...@gmail.com"),
            "nothing is left before the @ once what the mail provider ignores (+tag, Gmail dots) is removed"
        );
    }

    #[test]
    fn email_length_limits() {
        let local64 = "a".repeat(64);
        assert!(normalize_email(&format!("{local64}@example.com")).is_ok());
        assert_eq!(
            email_err(&format!("a{local64}@example.com")),
            "the part before the @ is longer than 64 characters"
        );
        // 254 characters in all is the most we take.
        let domain = format!("{}.{}.{}.com", "b".repeat(63), "c".repeat(63), "d".repeat(57));
        let at_limit = format!("{local64}@{domain}");
        assert_eq!(at_limit.len(), 254);
        assert!(normalize_email(&at_limit).is_ok());
        assert_eq!(
            email_err(&format!("a{at_limit}")),
            "it is longer than 254 characters"
        );
    }

    #[test]
    fn email_accepts_international_domains() {
        assert_eq!(normalize_email("Zoë@Bücher.DE").unwrap(), "zoë@bücher.de");
    }

    #[test]
    fn email_domain_is_the_part_after_the_at() {
        assert_eq!(email_domain("anna@example.co.uk"), "example.co.uk");
        assert_eq!(email_domain("not-an-address"), "");
    }

    #[test]
    fn uk_numbers_without_country_code_get_plus_44() {
        for input in [
            "07700 900123",
            "07700-900-123",
            "(07700) 900.123",
            "7700900123",
            "447700900123",
            "+44 7700 900123",
            "+44 (0)7700 900123",
            "+44 07700 900123",
            "0044 7700 900123",
            "0044 (0) 7700 900123",
        ] {
            assert_eq!(normalize_phone(input).unwrap(), "+447700900123", "{input}");
        }
        assert_eq!(normalize_phone("020 7946 0958").unwrap(), "+442079460958");
        assert_eq!(normalize_phone("+44 (0)20 7946 0958").unwrap(), "+442079460958");
    }

    #[test]
    fn international_numbers_keep_their_country_code() {
        assert_eq!(normalize_phone("+1 (212) 555-0100").unwrap(), "+12125550100");
        assert_eq!(normalize_phone("001 212 555 0100").unwrap(), "+12125550100");
        assert_eq!(normalize_phone("+33 6 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(normalize_phone("+49 (0)30 1234567").unwrap(), "+49301234567");
        assert_eq!(normalize_phone("(+353) 87 123 4567").unwrap(), "+353871234567");
    }

    #[test]
    fn phone_digit_count_is_8_to_15_with_the_country_code() {
        assert_eq!(
            normalize_phone("+1234567").unwrap_err(),
            phone_error("it has 7 digits with the country code; a phone number has 8 to 15")
        );
        assert_eq!(normalize_phone("+12345678").unwrap(), "+12345678");
        assert_eq!(normalize_phone("+123456789012345").unwrap(), "+123456789012345");
        assert!(phone_err("+1234567890123456").contains("16 digits"));
        // 0123 is a British number without its country code: +44123, far too short.
        assert!(phone_err("0123").contains("5 digits"));
    }

    #[test]
    fn phone_errors_say_what_is_wrong() {
        assert_eq!(phone_err(""), "it is empty");
        assert_eq!(phone_err(" - ( ) "), "it has no digits");
        assert_eq!(phone_err("+"), "it has no digits");
        assert_eq!(phone_err("07700 900123 ext 5"), "it contains `e`");
        assert_eq!(phone_err("07700/900123"), "it contains `/`");
        assert_eq!(phone_err("+44 7700 +900123"), "`+` may only start the number");
        assert_eq!(phone_err("++447700900123"), "`+` may only start the number");
        assert_eq!(phone_err("+0 7700 900123"), "a country code never starts with 0");
        assert_eq!(phone_err("000 7700 900123"), "a country code never starts with 0");
        assert!(phone_err(&"1".repeat(41)).contains("longer than 40"));
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            normalize_email("x").unwrap_err().to_string(),
            "invalid email address: `x` has no @"
        );
        assert_eq!(
            normalize_phone("abc").unwrap_err().to_string(),
            "invalid phone number: it contains `a`"
        );
    }
}
