//! Page sizes and opaque page tokens (keyset cursors: stable order, no gaps or repeats
//! while rows are added).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{ApiError, ApiResult};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// `pageSize`: default 50 when 0, at most 500, never negative.
pub fn page_size(requested: i32) -> ApiResult<u32> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(ApiError::invalid("pageSize", "must not be negative")),
        n => Ok((n as u32).min(MAX_PAGE_SIZE)),
    }
}

/// Encodes a cursor (the sort key of the last row returned).
pub fn encode_token(cursor: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_TAG}{cursor}").as_bytes())
}

/// Marks tokens we issued, so arbitrary base64 is refused rather than read as a cursor.
const TOKEN_TAG: &str = "rm1:";

/// Decodes `pageToken`; empty means the first page.
pub fn decode_token(token: &str) -> ApiResult<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(TOKEN_TAG).map(str::to_string))
        .map(Some)
        .ok_or_else(|| ApiError::invalid("pageToken", "is not a token this API issued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tokens() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(10_000).unwrap(), 500);
        assert!(page_size(-1).is_err());
        let t = encode_token("0192-abc");
        assert_eq!(decode_token(&t).unwrap().as_deref(), Some("0192-abc"));
        assert!(decode_token("!!!").is_err());
        // Base64 we did not issue is refused too.
        assert!(decode_token("Zm9vYmFy").is_err());
        assert_eq!(decode_token("").unwrap(), None);
    }
}
