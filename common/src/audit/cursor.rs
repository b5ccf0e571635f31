//! The audit log's page token: the (time, id) of the last entry returned. Entries are read
//! newest first by (time, id) descending, and ids are UUIDv7, so a page that starts strictly
//! below the cursor neither repeats nor skips rows while newer ones are added. The same
//! token pages one service's log and the gateway's merge of all four.

use chrono::{DateTime, Utc};

use crate::{ApiError, ApiResult, paging};

/// The position after which the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: String,
}

pub fn encode_cursor(c: &Cursor) -> String {
    paging::encode_token(&format!("audit:{}:{}", c.at.timestamp_micros(), c.id))
}

/// Decodes `pageToken`; empty is the first page. Anything we did not issue is a 400.
pub fn decode_cursor(token: &str) -> ApiResult<Option<Cursor>> {
    let Some(text) = paging::decode_token(token)? else {
        return Ok(None);
    };
    let bad = || ApiError::invalid("pageToken", "is not an audit page token this API issued");
    let rest = text.strip_prefix("audit:").ok_or_else(bad)?;
    let (micros, id) = rest.split_once(':').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(Some(Cursor {
        at,
        id: id.hyphenated().to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_strangers() {
        let c = Cursor {
            at: crate::ids::now(),
            id: crate::ids::new_id(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), Some(c));
        assert_eq!(decode_cursor("").unwrap(), None);
        for stranger in [
            paging::encode_token("0192-abc"),
            paging::encode_token("audit:12"),
            paging::encode_token("audit:x:0192"),
            paging::encode_token("audit:99999999999999999999:0192"),
            paging::encode_token("audit:1:not-a-uuid"),
            "!!".to_string(),
        ] {
            let e = decode_cursor(&stranger).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{stranger}");
        }
    }
}
