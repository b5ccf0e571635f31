//! The two sides of the marketplace and the four referral flows between them.

api_enum! {
    /// Which side of the marketplace a person is on.
    pub enum PartyKind ("party kind") {
        Supplier => "SUPPLIER",
        Couple => "COUPLE",
    }
}

api_enum! {
    /// The direction of a referral edge; analytics measures the viral loop per flow.
    pub enum Flow ("flow") {
        SupplierToCouple => "SUPPLIER_TO_COUPLE",
        CoupleToSupplier => "COUPLE_TO_SUPPLIER",
        SupplierToSupplier => "SUPPLIER_TO_SUPPLIER",
        CoupleToCouple => "COUPLE_TO_COUPLE",
    }
}

/// The flow of a referral from `referrer` to `referee`.
pub fn flow(referrer: PartyKind, referee: PartyKind) -> Flow {
    match (referrer, referee) {
        (PartyKind::Supplier, PartyKind::Couple) => Flow::SupplierToCouple,
        (PartyKind::Couple, PartyKind::Supplier) => Flow::CoupleToSupplier,
        (PartyKind::Supplier, PartyKind::Supplier) => Flow::SupplierToSupplier,
        (PartyKind::Couple, PartyKind::Couple) => Flow::CoupleToCouple,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_is_named_referrer_then_referee() {
        use PartyKind::{Couple, Supplier};
        assert_eq!(flow(Supplier, Couple), Flow::SupplierToCouple);
        assert_eq!(flow(Couple, Supplier), Flow::CoupleToSupplier);
        assert_eq!(flow(Supplier, Supplier), Flow::SupplierToSupplier);
        assert_eq!(flow(Couple, Couple), Flow::CoupleToCouple);
    }

    #[test]
    fn party_kind_names() {
        assert_eq!(PartyKind::Supplier.as_str(), "SUPPLIER");
        assert_eq!(PartyKind::parse("COUPLE"), Ok(PartyKind::Couple));
        assert!(PartyKind::parse("couple").is_err());
        assert!(PartyKind::parse("").is_err());
        assert_eq!(Flow::CoupleToCouple.as_str(), "COUPLE_TO_COUPLE");
    }
}
