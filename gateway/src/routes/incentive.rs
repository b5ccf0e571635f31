//! incentive-svc's resources: reward programs, campaigns, referrers' rewards and payouts
//! (docs/api.md).

use axum::http::Method;
use referral_proto::incentive::v1 as incentive;

use super::route::{Body, Route, Rpc, api, unary};

const INCENTIVE: &str = "referral.incentive.v1.IncentiveService";

const REWARDS: &str = "Rewards";

/// incentive-svc's routes.
pub fn routes() -> Vec<Route> {
    use Body::{Field, None as NoBody, Whole};
    use Method as M;
    vec![
        api(
            M::PUT,
            "/v1/reward-programs/{id}",
            "Create or replace a reward program (admin); the body is the program",
            REWARDS,
            Rpc::new(INCENTIVE, "PutRewardProgram", Field("program")),
            unary!(incentive.put_reward_program(incentive::PutRewardProgramRequest)),
        ),
        api(
            M::GET,
            "/v1/reward-programs",
            "Reward programs",
            REWARDS,
            Rpc::new(INCENTIVE, "ListRewardPrograms", NoBody),
            unary!(incentive.list_reward_programs(incentive::ListRewardProgramsRequest)),
        ),
        api(
            M::GET,
            "/v1/reward-programs/{id}",
            "A reward program",
            REWARDS,
            Rpc::new(INCENTIVE, "GetRewardProgram", NoBody),
            unary!(incentive.get_reward_program(incentive::GetRewardProgramRequest)),
        ),
        api(
            M::POST,
            "/v1/reward-programs/{id}:simulate",
            "Dry-run a program over past conversions; writes nothing (admin)",
            REWARDS,
            Rpc::new(INCENTIVE, "SimulateRewardProgram", Whole),
            unary!(incentive.simulate_reward_program(incentive::SimulateRewardProgramRequest)),
        ),
        api(
            M::POST,
            "/v1/campaigns",
            "Create a campaign that multiplies rewards (admin)",
            REWARDS,
            Rpc::new(INCENTIVE, "CreateCampaign", Whole),
            unary!(incentive.create_campaign(incentive::CreateCampaignRequest)),
        ),
        api(
            M::GET,
            "/v1/campaigns",
            "Campaigns",
            REWARDS,
            Rpc::new(INCENTIVE, "ListCampaigns", NoBody),
            unary!(incentive.list_campaigns(incentive::ListCampaignsRequest)),
        ),
        api(
            M::GET,
            "/v1/referrers/{id}/rewards",
            "A referrer's balance, tier, badges, next milestone and ledger",
            REWARDS,
            Rpc::new(INCENTIVE, "GetReferrerRewards", NoBody).param("id", "referrerId"),
            unary!(incentive.get_referrer_rewards(incentive::GetReferrerRewardsRequest)),
        ),
        api(
            M::POST,
            "/v1/payouts",
            "Pay a referrer's whole eligible balance (idempotent)",
            REWARDS,
            Rpc::new(INCENTIVE, "CreatePayout", Whole),
            unary!(incentive.create_payout(incentive::CreatePayoutRequest)),
        ),
        api(
            M::GET,
            "/v1/payouts/{id}",
            "A payout",
            REWARDS,
            Rpc::new(INCENTIVE, "GetPayout", NoBody),
            unary!(incentive.get_payout(incentive::GetPayoutRequest)),
        ),
    ]
}
