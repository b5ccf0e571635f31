//! The tonic IncentiveService: decode, authenticate, run writes once per Idempotency-Key,
//! call one `app` function, map errors to `Status`.
//!
//! Admins write programs and campaigns and run simulations; anyone signed in reads them.
//! A member reads only its own rewards and payouts and pays out only itself.

use referral_common::{ApiResult, audit::Actor, auth::Principal, idempotency::Idempotency};
use referral_proto::incentive::v1::{
    Campaign, CreateCampaignRequest, CreatePayoutRequest, GetPayoutRequest, GetReferrerRewardsRequest,
    GetRewardProgramRequest, ListCampaignsRequest, ListCampaignsResponse, ListRewardProgramsRequest,
    ListRewardProgramsResponse, Payout, PutRewardProgramRequest, ReferrerRewards, RewardProgram,
    SimulateRewardProgramRequest, SimulationResult, incentive_service_server::IncentiveService,
};
use tonic::{Request, Response, Status};

use crate::{
    app::{campaigns, payouts, programs, referrer_rewards, simulate_program},
    store::Store,
};

pub struct IncentiveApi<S> {
    store: S,
    idempotency: Idempotency,
}

impl<S: Store> IncentiveApi<S> {
    pub fn new(store: S, idempotency: Idempotency) -> Self {
        Self { store, idempotency }
    }

    /// A write: authenticated, run at most once per Idempotency-Key, errors as `Status`.
    async fn write<Req, T, Fut>(
        &self,
        req: Request<Req>,
        method: &str,
        work: impl FnOnce(Principal, Actor, Req) -> Fut,
    ) -> Result<Response<T>, Status>
    where
        Req: prost::Message + Clone,
        T: prost::Message + Default,
        Fut: Future<Output = ApiResult<T>>,
    {
        self.idempotency.serve(req, method, Actor::of, work).await
    }
}

fn reply<T>(r: ApiResult<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl<S: Store> IncentiveService for IncentiveApi<S> {
    async fn put_reward_program(
        &self,
        req: Request<PutRewardProgramRequest>,
    ) -> Result<Response<RewardProgram>, Status> {
        self.write(req, "PutRewardProgram", |p, a, r| async move {
            programs::put(&self.store, &p, &a, r).await
        })
        .await
    }

    async fn get_reward_program(
        &self,
        req: Request<GetRewardProgramRequest>,
    ) -> Result<Response<RewardProgram>, Status> {
        Principal::of(&req)?;
        reply(programs::get(&self.store, req.into_inner()).await)
    }

    async fn list_reward_programs(
        &self,
        req: Request<ListRewardProgramsRequest>,
    ) -> Result<Response<ListRewardProgramsResponse>, Status> {
        Principal::of(&req)?;
        reply(programs::list(&self.store, req.into_inner()).await)
    }

    async fn simulate_reward_program(
        &self,
        req: Request<SimulateRewardProgramRequest>,
    ) -> Result<Response<SimulationResult>, Status> {
        let p = Principal::of(&req)?;
        reply(simulate_program::simulate(&self.store, &p, req.into_inner()).await)
    }

    async fn create_campaign(
        &self,
        req: Request<CreateCampaignRequest>,
    ) -> Result<Response<Campaign>, Status> {
        self.write(req, "CreateCampaign", |p, a, r| async move {
            campaigns::create(&self.store, &p, &a, r).await
        })
        .await
    }

    async fn list_campaigns(
        &self,
        req: Request<ListCampaignsRequest>,
    ) -> Result<Response<ListCampaignsResponse>, Status> {
        Principal::of(&req)?;
        reply(campaigns::list(&self.store, req.into_inner()).await)
    }

    async fn get_referrer_rewards(
        &self,
        req: Request<GetReferrerRewardsRequest>,
    ) -> Result<Response<ReferrerRewards>, Status> {
        let p = Principal::of(&req)?;
        reply(referrer_rewards::get(&self.store, &p, req.into_inner()).await)
    }

    async fn create_payout(&self, req: Request<CreatePayoutRequest>) -> Result<Response<Payout>, Status> {
        self.write(req, "CreatePayout", |p, a, r| async move {
            payouts::create(&self.store, &p, &a, r).await
        })
        .await
    }

    async fn get_payout(&self, req: Request<GetPayoutRequest>) -> Result<Response<Payout>, Status> {
        let p = Principal::of(&req)?;
        reply(payouts::get(&self.store, &p, req.into_inner()).await)
    }
}
