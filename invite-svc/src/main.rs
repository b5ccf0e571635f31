//! invite-svc binary: `serve` (default) or `migrate` (see [`referral_common::service`]).

fn main() {
    referral_common::service::Service::<invite_svc::InviteConfig>::new().main()
}
