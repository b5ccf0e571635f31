//! fraud-svc binary: `serve` (default) or `migrate` (see [`referral_common::service`]).

fn main() {
    referral_common::service::Service::<fraud_svc::FraudConfig>::new().main()
}
