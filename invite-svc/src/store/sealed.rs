//! Personal data at rest (issue #16): which columns of invite-svc hold it, sealed with
//! [`PiiKeys::seal`] on the way in and opened on the way out, so everything above the store
//! (the app, the conformance suite) sees plain values and the database files see none.
//!
//! Sealed: the recipient's e-mail, phone and name, the referrer's name and message and the
//! wedding date on invitations; the visitor id (a browser's cookie), user agent, IP and
//! device id on clicks; the e-mail and name on signups; the IP and device id everywhere.
//! Looked up by keyed hash instead ([`PiiKeys::lookup`], computed by the app from the
//! normalised value): `invitations.recipient_key` and `signups.email_norm`.
//!
//! A value that does not open (altered, or sealed under a key no longer in PII_KEYS) is an
//! error naming the row, never an empty value.

use referral_common::pii::PiiKeys;

use super::{ClickRow, InvitationRow, SignupRow, StoreError, StoreResult};

/// Hex characters of a [`PiiKeys::lookup`] hash.
const LOOKUP_LEN: usize = 32;

/// Whether a stored key column already holds a keyed hash (rows from before encryption
/// hold the normalised address or phone number itself: `reencrypt` hashes those).
pub fn is_lookup_hash(stored: &str) -> bool {
    stored.len() == LOOKUP_LEN
        && stored
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The keyed hash a recipient is found by: of the normalised e-mail when there is one, else
/// of the normalised phone number; "" for neither.
pub fn recipient_key(pii: &PiiKeys, email_norm: &str, phone_norm: &str) -> String {
    if !email_norm.is_empty() {
        pii.lookup("email", email_norm)
    } else {
        pii.lookup("phone", phone_norm)
    }
}

/// A row with personal fields: which they are, and the id errors name.
pub trait Personal: Clone {
    /// What the row is, for errors ("invitation").
    const WHAT: &'static str;
    fn key(&self) -> String;
    /// The personal fields, in the order of the table's `*_SEALED` columns.
    fn fields(&mut self) -> Vec<&mut String>;
}

/// The row as stored: its personal fields sealed.
pub fn seal<T: Personal>(pii: &PiiKeys, row: &T) -> T {
    let mut s = row.clone();
    for field in s.fields() {
        *field = pii.seal(field);
    }
    s
}

/// The row as read: its personal fields opened; one that does not open is an error naming
/// the row, never an empty value.
pub fn open<T: Personal>(pii: &PiiKeys, mut row: T) -> StoreResult<T> {
    let key = row.key();
    for field in row.fields() {
        *field = pii
            .open(field)
            .map_err(|e| StoreError::Sealed(format!("{} {key}: {e}", T::WHAT)))?;
    }
    Ok(row)
}

pub fn open_opt<T: Personal>(pii: &PiiKeys, row: Option<T>) -> StoreResult<Option<T>> {
    row.map(|r| open(pii, r)).transpose()
}

pub fn open_all<T: Personal>(pii: &PiiKeys, rows: Vec<T>) -> StoreResult<Vec<T>> {
    rows.into_iter().map(|r| open(pii, r)).collect()
}

/// The sealed columns of invitations.
pub const INVITATION_SEALED: [&str; 8] = [
    "recipient_email",
    "recipient_phone",
    "recipient_name",
    "message",
    "referrer_name",
    "wedding_date",
    "ip",
    "device_id",
];

impl Personal for InvitationRow {
    const WHAT: &'static str = "invitation";
    fn key(&self) -> String {
        self.id.clone()
    }
    fn fields(&mut self) -> Vec<&mut String> {
        vec![
            &mut self.recipient_email,
            &mut self.recipient_phone,
            &mut self.recipient_name,
            &mut self.message,
            &mut self.referrer_name,
            &mut self.wedding_date,
            &mut self.ip,
            &mut self.device_id,
        ]
    }
}

/// The sealed columns of clicks.
pub const CLICK_SEALED: [&str; 4] = ["visitor_id", "user_agent", "ip", "device_id"];

impl Personal for ClickRow {
    const WHAT: &'static str = "click";
    fn key(&self) -> String {
        self.click_id.clone()
    }
    fn fields(&mut self) -> Vec<&mut String> {
        vec![
            &mut self.visitor_id,
            &mut self.user_agent,
            &mut self.ip,
            &mut self.device_id,
        ]
    }
}

/// The sealed columns of signups.
pub const SIGNUP_SEALED: [&str; 4] = ["email", "name", "ip", "device_id"];

impl Personal for SignupRow {
    const WHAT: &'static str = "signup";
    fn key(&self) -> String {
        self.id.clone()
    }
    fn fields(&mut self) -> Vec<&mut String> {
        vec![&mut self.email, &mut self.name, &mut self.ip, &mut self.device_id]
    }
}

/// What `reencrypt` did to one table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Rows read.
    pub examined: u64,
    /// Rows written again (a value sealed under the first key, or a key column hashed).
    pub changed: u64,
}

/// `stored` as `reencrypt` leaves it: sealed under the first key. `None` when it needs
/// nothing.
pub fn reseal(pii: &PiiKeys, what: &str, id: &str, stored: &str) -> StoreResult<Option<String>> {
    pii.reseal(stored)
        .map_err(|e| StoreError::Sealed(format!("{what} {id}: {e}")))
}

/// A key column as `reencrypt` leaves it: a row from before encryption holds the
/// normalised value itself, which becomes its keyed hash. `None` when it needs nothing.
pub fn rehash(pii: &PiiKeys, kind: &str, stored: &str) -> Option<String> {
    if stored.is_empty() || stored == referral_common::pii::TOMBSTONE || is_lookup_hash(stored) {
        return None;
    }
    Some(pii.lookup(kind, stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_hashes_are_recognised_and_plain_keys_are_not() {
        let pii = PiiKeys::for_tests();
        let key = recipient_key(&pii, "anna@example.com", "");
        assert!(is_lookup_hash(&key));
        assert_ne!(key, recipient_key(&pii, "", "anna@example.com"), "kinds differ");
        assert!(!is_lookup_hash("anna@example.com"));
        assert!(!is_lookup_hash("+447700900123"));
        assert_eq!(rehash(&pii, "email", &key), None);
        assert_eq!(rehash(&pii, "email", "anna@example.com"), Some(key));
        assert_eq!(rehash(&pii, "email", ""), None);
    }
}
