//! The programs that exist on first start (docs/api.md's supplier and couple defaults).

use crate::{domain::program, store::Store};

/// Inserts each default program whose id does not exist yet.
pub async fn seed<S: Store>(store: &S) -> anyhow::Result<()> {
    store
        .seed_programs(vec![program::default_supplier(), program::default_couple()])
        .await?;
    Ok(())
}
