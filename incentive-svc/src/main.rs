//! incentive-svc binary: `serve` (default) or `migrate` (see [`referral_common::service`]).

fn main() {
    referral_common::service::Service::<incentive_svc::IncentiveConfig>::new().main()
}
