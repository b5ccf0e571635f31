//! The one rule for what a subject (`sub`) may be. It is checked where a subject enters (the
//! gateway's token check, a service's own token check, a forwarded principal), so every
//! later hop can store, log and compare it without surprises: any Unicode letter works,
//! nothing that could forge a log line or reorder what an admin reads on screen does.

/// Longest subject, in characters (Unicode scalar values), not bytes.
pub const MAX_SUBJECT_CHARS: usize = 128;

/// Why a subject was refused; the message names the rule, never echoes the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject is empty")]
    Empty,
    #[error("subject is longer than {MAX_SUBJECT_CHARS} characters")]
    TooLong,
    #[error("subject holds a control character")]
    Control,
    #[error("subject holds a bidirectional formatting mark")]
    Bidi,
}

/// 1..=128 characters, not blank, no control characters (C0, DEL, C1 including U+0085)
/// and no bidirectional embedding/override/isolate marks (U+202A–U+202E, U+2066–U+2069)
/// or implicit direction marks (U+200E, U+200F, U+061C).
pub fn valid_subject(sub: &str) -> Result<(), SubjectError> {
    if sub.trim().is_empty() {
        return Err(SubjectError::Empty);
    }
    if sub.chars().count() > MAX_SUBJECT_CHARS {
        return Err(SubjectError::TooLong);
    }
    for c in sub.chars() {
        // `char::is_control` is the Cc category: C0, DEL and C1 (U+0080–U+009F).
        if c.is_control() {
            return Err(SubjectError::Control);
        }
        if is_bidi_mark(c) {
            return Err(SubjectError::Bidi);
        }
    }
    Ok(())
}

fn is_bidi_mark(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_script_within_the_length_is_a_subject() {
        for ok in [
            "josé",
            "名前",
            "invite-svc",
            "gateway",
            "u1",
            "Zoë O'Brien",
            "a b",
        ] {
            assert_eq!(valid_subject(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(valid_subject(&"é".repeat(128)), Ok(()));
        assert_eq!(valid_subject(&"é".repeat(129)), Err(SubjectError::TooLong));
        assert_eq!(valid_subject(&"a".repeat(256)), Err(SubjectError::TooLong));
    }

    #[test]
    fn blank_control_and_bidi_subjects_are_refused() {
        for empty in ["", " ", "\u{3000}", "\t "] {
            assert_eq!(valid_subject(empty), Err(SubjectError::Empty), "{empty:?}");
        }
        for control in [
            "a\nb",
            "a\u{0}",
            "a\u{7f}",
            "a\u{85}",
            "a\u{9f}",
            "a\rb",
            "x\u{1b}[31m",
        ] {
            assert_eq!(valid_subject(control), Err(SubjectError::Control), "{control:?}");
        }
        for bidi in [
            "a\u{202E}b",
            "a\u{202A}",
            "\u{2066}a",
            "a\u{2069}",
            "a\u{200F}",
            "a\u{061C}",
        ] {
            assert_eq!(valid_subject(bidi), Err(SubjectError::Bidi), "{bidi:?}");
        }
    }
}
