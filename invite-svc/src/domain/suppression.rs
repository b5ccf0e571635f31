//! Consent and suppression, the pure part: why an address is suppressed, which address of an
//! invitation a suppression is about, the signed unsubscribe token of every invitation email
//! and its `List-Unsubscribe` links (RFC 2369, RFC 8058), and how an address is shown masked.
//!
//! The token is `{invitation id}.{MAC}`: HMAC-SHA256 over a label and the invitation id under
//! `UNSUBSCRIBE_SIGNING_KEY`. It carries nothing personal, cannot be forged or altered
//! without the key, and does not expire (an unsubscribe link must keep working for as long as
//! the message sits in a mailbox).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{contact, status::Channel};

type HmacSha256 = Hmac<Sha256>;

/// Domain separation of the token's MAC (the key signs nothing else, but a label costs nothing).
const TOKEN_LABEL: &[u8] = b"referral-mesh/unsubscribe/v1\0";

/// Longest token accepted (an id of at most 100 characters, a dot and 64 hex digits).
pub const TOKEN_MAX: usize = 165;

/// Longest invitation id a token may carry (`input::ID_MAX`).
const ID_MAX: usize = 100;

/// What a refused invitation says, whatever the reason the address is suppressed.
pub const REFUSAL: &str = "the recipient has asked not to receive invitations";

/// The status reason of a queued invitation cancelled by a suppression.
pub const CANCEL_REASON: &str = "recipient suppressed";

api_enum! {
    /// Why an address is on the suppression list (never told to a referrer).
    pub enum Reason ("suppression reason") {
        /// The recipient followed the unsubscribe link (or one-click).
        Unsubscribed => "UNSUBSCRIBED",
        /// The provider reported a permanent delivery failure.
        HardBounce => "HARD_BOUNCE",
        /// The recipient reported a message as spam.
        Complaint => "COMPLAINT",
        /// The recipient replied STOP to an SMS.
        SmsStop => "SMS_STOP",
    }
}

/// Which kind of address: also the `kind` of its lookup hash (`PiiKeys::lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactKind {
    Email,
    Phone,
}

impl ContactKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
        }
    }
}

/// The address a message of `channel` goes to, in canonical form (the form its lookup hash
/// is taken of): the email for EMAIL, the phone for SMS; none for channels we do not send
/// (LINK, QR, SOCIAL: the referrer shares those), or when the stored address no longer
/// normalises (it then cannot be suppressed, nor sent to).
pub fn messaged_contact(channel: Channel, email: &str, phone: &str) -> Option<(ContactKind, String)> {
    match channel {
        Channel::Email => contact::normalize_email(email)
            .ok()
            .map(|e| (ContactKind::Email, e)),
        Channel::Sms => contact::normalize_phone(phone)
            .ok()
            .map(|p| (ContactKind::Phone, p)),
        Channel::Link | Channel::Qr | Channel::Social => None,
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the unsubscribe link is malformed")]
    Malformed,
    #[error("the unsubscribe link is not one of ours")]
    BadSignature,
}

/// Signs and verifies unsubscribe tokens.
#[derive(Clone)]
pub struct UnsubscribeKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for UnsubscribeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsubscribeKey(..)")
    }
}

/// Shortest signing secret accepted.
pub const KEY_MIN_LEN: usize = 32;

impl UnsubscribeKey {
    /// A key from a secret of at least [`KEY_MIN_LEN`] characters.
    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.trim().len() < KEY_MIN_LEN {
            return Err(format!("must be at least {KEY_MIN_LEN} characters"));
        }
        let mac = <HmacSha256 as Mac>::new_from_slice(secret.trim().as_bytes()).map_err(|e| e.to_string())?;
        Ok(Self { mac })
    }

    fn tag(&self, invitation_id: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(TOKEN_LABEL);
        mac.update(invitation_id.as_bytes());
        mac
    }

    /// The token of an invitation's unsubscribe link.
    pub fn sign(&self, invitation_id: &str) -> String {
        let tag = hex::encode(self.tag(invitation_id).finalize().into_bytes());
        format!("{invitation_id}.{tag}")
    }

    /// The invitation id a token names, once its MAC verifies (in constant time).
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        if token.len() > TOKEN_MAX {
            return Err(TokenError::Malformed);
        }
        let (id, tag_hex) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let id_ok = !id.is_empty()
            && id.len() <= ID_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok || tag_hex.len() != 64 {
            return Err(TokenError::Malformed);
        }
        let tag = hex::decode(tag_hex).map_err(|_| TokenError::Malformed)?;
        self.tag(id)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(id.to_string())
    }
}

/// The unsubscribe links of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeLinks {
    /// `https://{PUBLIC_URL}/u/{token}`: the page, and the RFC 8058 one-click POST target.
    pub url: String,
    /// `mailto:unsubscribe@{domain}?subject=unsubscribe-{token}`.
    pub mailto: String,
}

impl UnsubscribeLinks {
    pub fn new(public_url: &str, mailto_domain: &str, token: &str) -> Self {
        Self {
            url: format!("{}/u/{token}", public_url.trim_end_matches('/')),
            mailto: format!("mailto:unsubscribe@{mailto_domain}?subject=unsubscribe-{token}"),
        }
    }

    /// The `List-Unsubscribe` header's value (RFC 2369: each URI in angle brackets).
    pub fn list_unsubscribe(&self) -> String {
        format!("<{}>, <{}>", self.url, self.mailto)
    }

    /// The `List-Unsubscribe-Post` header's value (RFC 8058).
    pub const LIST_UNSUBSCRIBE_POST: &'static str = "List-Unsubscribe=One-Click";
}

/// An address as admins and the unsubscribe page see it: the first character of the local
/// part and the domain of an email (`a***@example.com`); the country code and last three
/// digits of a phone (`+44*******123`).
pub fn mask(kind: ContactKind, address: &str) -> String {
    match kind {
        ContactKind::Email => match address.rsplit_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".into(),
        },
        ContactKind::Phone => {
            let chars: Vec<char> = address.chars().collect();
            if chars.len() <= 6 {
                return "*".repeat(chars.len());
            }
            let head: String = chars[..3].iter().collect();
            let tail: String = chars[chars.len() - 3..].iter().collect();
            format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> UnsubscribeKey {
        UnsubscribeKey::new("an-unsubscribe-key-of-at-least-32-chars").unwrap()
    }

    const ID: &str = "0193a5f0-7c1e-7000-8000-000000000001";

    #[test]
    fn a_signed_token_names_its_invitation() {
        let token = key().sign(ID);
        assert!(token.starts_with(ID) && token.len() <= TOKEN_MAX, "{token}");
        assert_eq!(key().verify(&token), Ok(ID.to_string()));
    }

    #[test]
    fn an_altered_or_forged_token_is_refused() {
        let token = key().sign(ID);
        // Another invitation's id under this MAC.
        let other = token.replacen("0001.", "0002.", 1);
        assert_eq!(key().verify(&other), Err(TokenError::BadSignature));
        // One hex digit of the MAC changed.
        let mut bytes = token.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert_eq!(key().verify(&flipped), Err(TokenError::BadSignature));
        // Signed under another key.
        let foreign = UnsubscribeKey::new("another-key-entirely-0123456789abcdef").unwrap();
        assert_eq!(key().verify(&foreign.sign(ID)), Err(TokenError::BadSignature));
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let long = "a".repeat(TOKEN_MAX + 1);
        let bad_id = format!("a/b.{}", "0".repeat(64));
        let empty_id = format!(".{}", "0".repeat(64));
        let not_hex = format!("{ID}.{}", "z".repeat(64));
        for bad in [
            "", ".", "no-dot", &long, &bad_id, &empty_id, &not_hex, "x.abc", "é.é",
        ] {
            assert_eq!(key().verify(bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(UnsubscribeKey::new("short").is_err());
        assert!(UnsubscribeKey::new(&" ".repeat(40)).is_err());
    }

    #[test]
    fn the_headers_follow_rfc_2369_and_8058() {
        let links = UnsubscribeLinks::new("https://r.example/", "example.com", "T.1");
        assert_eq!(
            links.list_unsubscribe(),
            "<https://r.example/u/T.1>, <mailto:unsubscribe@example.com?subject=unsubscribe-T.1>"
        );
        assert_eq!(
            UnsubscribeLinks::LIST_UNSUBSCRIBE_POST,
            "List-Unsubscribe=One-Click"
        );
    }

    #[test]
    fn addresses_are_masked() {
        assert_eq!(mask(ContactKind::Email, "anna@example.com"), "a***@example.com");
        assert_eq!(mask(ContactKind::Email, "ünï@x.org"), "ü***@x.org");
        assert_eq!(mask(ContactKind::Email, "nonsense"), "***");
        assert_eq!(mask(ContactKind::Phone, "+447700900123"), "+44*******123");
        assert_eq!(mask(ContactKind::Phone, "+4412"), "*****");
    }

    #[test]
    fn the_messaged_contact_is_the_channels() {
        assert_eq!(
            messaged_contact(Channel::Email, " Anna+w@Example.com", "+447700900123"),
            Some((ContactKind::Email, "anna@example.com".into()))
        );
        assert_eq!(
            messaged_contact(Channel::Sms, "anna@example.com", "07700 900123"),
            Some((ContactKind::Phone, "+447700900123".into()))
        );
        assert_eq!(messaged_contact(Channel::Link, "anna@example.com", ""), None);
        assert_eq!(messaged_contact(Channel::Email, "", ""), None);
    }

    #[test]
    fn reasons_spell_the_proto_names() {
        for r in Reason::ALL {
            let pb = referral_proto::invite::v1::SuppressionReason::from_str_name(r.as_str());
            assert!(pb.is_some(), "{r}");
        }
    }
}
