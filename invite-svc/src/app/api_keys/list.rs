//! Listing API keys, a page at a time (never their secrets or hashes).

use referral_common::{ApiResult, paging};
use referral_proto::invite::v1::ListApiKeysRequest;

use crate::{
    app::next_page,
    store::api_keys::{ApiKeyRow, ApiKeyStore},
};

/// A page of keys and the token of the next page ("" on the last).
pub async fn list_api_keys<S: ApiKeyStore>(
    store: &S,
    req: ListApiKeysRequest,
) -> ApiResult<(Vec<ApiKeyRow>, String)> {
    let size = paging::page_size(req.page_size)?;
    let after = paging::decode_token(&req.page_token)?;
    let mut rows = store.list_api_keys(after.as_deref(), i64::from(size) + 1).await?;
    let next = next_page(&mut rows, size, |r| &r.id);
    Ok((rows, next))
}
