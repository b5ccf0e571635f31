//! The tonic IncentiveService: decode, authorize, validate, call domain + store, map errors.
//!
//! Admins write programs and campaigns and run simulations; anyone signed in reads them.
//! A member reads only its own rewards and payouts and pays out only itself.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    idempotency::Idempotency,
    ids::{self, from_ts, to_ts},
    input, paging,
};
use referral_proto::{
    common::v1::PartyKind,
    incentive::v1::{
        Balance, Campaign, CreateCampaignRequest, CreatePayoutRequest, GetPayoutRequest,
        GetReferrerRewardsRequest, GetRewardProgramRequest, ListCampaignsRequest, ListCampaignsResponse,
        ListRewardProgramsRequest, ListRewardProgramsResponse, NextMilestone, Payout,
        PutRewardProgramRequest, ReferrerRewards, RewardProgram, SimulateRewardProgramRequest,
        SimulatedReferrer, SimulationResult, incentive_service_server::IncentiveService,
    },
};
use tonic::{Request, Response, Status};

use crate::{
    convert::{self, money},
    domain::{
        program::{self, is_iso_currency, kind_name},
        rewards,
    },
    store::{CampaignRow, PayoutOutcome, Store},
};

const MAX_ID_LEN: usize = 128;
const MAX_NAME_LEN: usize = 200;
/// The most a campaign may multiply a reward by (a typo guard).
const MAX_MULTIPLIER: f64 = 10.0;
/// Default simulation window, and the most conversions one simulation replays.
const SIMULATION_DAYS: i64 = 90;
const SIMULATION_LIMIT: i64 = 200_000;

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
        let p = Principal::of(&req)?;
        let actor = Actor::of(&req)?;
        let md = req.metadata().clone();
        let body = req.into_inner();
        let caller = p.sub.clone();
        let out = self
            .idempotency
            .run(&md, &caller, method, &body, async {
                Ok(work(p, actor, body.clone()).await?)
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn put_program(
        &self,
        p: &Principal,
        actor: &Actor,
        req: PutRewardProgramRequest,
    ) -> ApiResult<RewardProgram> {
        p.require_admin()?;
        let Some(mut body) = req.program else {
            return Err(ApiError::invalid(
                "program",
                "the request body must be the program",
            ));
        };
        program::validate(&req.id, &body).map_err(ApiError::Invalid)?;
        body.id = req.id;
        // Omitted means active: a program an admin writes is meant to be used.
        body.active = Some(body.active.unwrap_or(true));
        let audit = AuditEntry::new(actor, action::REWARD_PROGRAM_PUT, "reward_program", &body.id);
        Ok(self.store.put_program(body, ids::now(), &audit).await?)
    }

    async fn get_program(&self, req: GetRewardProgramRequest) -> ApiResult<RewardProgram> {
        self.store
            .get_program(&req.id)
            .await?
            .ok_or_else(|| ApiError::not_found("reward program", &req.id))
    }

    async fn list_programs(&self, req: ListRewardProgramsRequest) -> ApiResult<ListRewardProgramsResponse> {
        let size = paging::page_size(req.page_size)?;
        let after = paging::decode_token(&req.page_token)?;
        let mut programs = self
            .store
            .list_programs(after.as_deref(), i64::from(size) + 1)
            .await?;
        let next = next_token(&mut programs, size, |p| p.id.clone());
        Ok(ListRewardProgramsResponse {
            programs,
            next_page_token: next,
        })
    }

    async fn simulate(
        &self,
        p: &Principal,
        req: SimulateRewardProgramRequest,
    ) -> ApiResult<SimulationResult> {
        p.require_admin()?;
        let now = ids::now();
        let mut v = Violations::default();
        let to = optional_instant(&mut v, req.to.as_ref(), "to").unwrap_or(now);
        let from = optional_instant(&mut v, req.from.as_ref(), "from")
            .unwrap_or(to - Duration::days(SIMULATION_DAYS));
        v.check(from >= to, "from", "must be before to");
        v.check(
            to - from > Duration::days(3 * 366),
            "from",
            "the window may span at most 3 years",
        );
        v.into_result()?;
        let body = match req.program {
            Some(body) => body,
            None => self
                .store
                .get_program(&req.id)
                .await?
                .ok_or_else(|| ApiError::not_found("reward program", &req.id))?,
        };
        let prog = program::validate(&req.id, &body).map_err(|v| ApiError::Invalid(v.prefixed("program")))?;
        let kind = kind_name(prog.referrer_kind);
        let (past, prior) = self
            .store
            .past_conversions(kind, from, to, SIMULATION_LIMIT)
            .await?;
        let prior: HashMap<String, i32> = prior
            .into_iter()
            .map(|(r, n)| (r, i32::try_from(n).unwrap_or(i32::MAX)))
            .collect();
        let sim = rewards::simulate(&prog, &past, &prior).map_err(|e| ApiError::FailedPrecondition {
            message: e.to_string(),
            reason: "AMOUNT_OUT_OF_RANGE",
        })?;
        Ok(SimulationResult {
            total: Some(money(sim.total_minor, &prog.currency)),
            conversions: sim.conversions,
            referrers: sim
                .referrers
                .into_iter()
                .map(|(referrer_id, (conversions, total))| SimulatedReferrer {
                    referrer_id,
                    conversions,
                    total: Some(money(total, &prog.currency)),
                })
                .collect(),
            from: Some(to_ts(from)),
            to: Some(to_ts(to)),
            skipped: sim.skipped,
        })
    }

    async fn create_campaign(
        &self,
        p: &Principal,
        actor: &Actor,
        req: CreateCampaignRequest,
    ) -> ApiResult<Campaign> {
        p.require_admin()?;
        let mut v = Violations::default();
        if req.name.trim().is_empty() {
            v.add("name", "is required");
        } else {
            input::line(&mut v, &req.name, MAX_NAME_LEN, "name");
        }
        let starts = required_instant(&mut v, req.starts_at.as_ref(), "startsAt");
        let ends = required_instant(&mut v, req.ends_at.as_ref(), "endsAt");
        // A campaign runs within ten years either side of now: anything else is a typo, and
        // derived instants stay far inside the storable years.
        let (earliest, latest) = (
            ids::now() - input::BACKFILL_MAX_AGE,
            ids::now() + input::BACKFILL_MAX_AGE,
        );
        if let Some(s) = starts {
            input::instant_between(&mut v, s, earliest, latest, "startsAt");
        }
        if let Some(e) = ends {
            input::instant_between(&mut v, e, earliest, latest, "endsAt");
        }
        if let (Some(s), Some(e)) = (starts, ends) {
            v.check(e <= s, "endsAt", "must be after startsAt");
        }
        if !req.multiplier.is_finite() || req.multiplier < 1.0 || req.multiplier > MAX_MULTIPLIER {
            v.add("multiplier", format!("must be between 1 and {MAX_MULTIPLIER}"));
        }
        let kind = match req.referrer_kind.map(PartyKind::try_from) {
            None => None,
            Some(Ok(k @ (PartyKind::Supplier | PartyKind::Couple))) => Some(kind_name(k).to_string()),
            Some(_) => {
                v.add("referrerKind", "must be SUPPLIER or COUPLE when given");
                None
            }
        };
        if let Some(cap) = &req.budget_cap {
            v.check(
                cap.amount_minor < 0 || cap.amount_minor > input::DEFAULT_MAX_AMOUNT_MINOR,
                "budgetCap.amountMinor",
                format!("must be between 0 and {}", input::DEFAULT_MAX_AMOUNT_MINOR),
            );
            v.check(
                !is_iso_currency(&cap.currency),
                "budgetCap.currency",
                "must be an ISO 4217 code such as GBP",
            );
        }
        v.into_result()?;
        let (Some(starts_at), Some(ends_at)) = (starts, ends) else {
            return Err(ApiError::invalid("startsAt", "is required"));
        };
        let now = ids::now();
        let row = CampaignRow {
            id: ids::new_id(),
            name: req.name.trim().to_string(),
            starts_at,
            ends_at,
            multiplier: req.multiplier,
            referrer_kind: kind,
            cap_minor: req.budget_cap.as_ref().map(|c| c.amount_minor),
            cap_currency: req.budget_cap.as_ref().map(|c| c.currency.clone()),
            created_at: now,
            spent_hi: 0,
            spent_lo: 0,
        };
        let audit = AuditEntry::new(actor, action::CAMPAIGN_CREATE, "campaign", &row.id);
        let row = self.store.create_campaign(row, &audit).await?;
        Ok(convert::campaign(&row, now))
    }

    async fn list_campaigns(&self, req: ListCampaignsRequest) -> ApiResult<ListCampaignsResponse> {
        let size = paging::page_size(req.page_size)?;
        let after = paging::decode_token(&req.page_token)?;
        let now = ids::now();
        let mut rows = self
            .store
            .list_campaigns(req.active, now, after.as_deref(), i64::from(size) + 1)
            .await?;
        let next = next_token(&mut rows, size, |c| c.id.clone());
        Ok(ListCampaignsResponse {
            campaigns: rows.iter().map(|r| convert::campaign(r, now)).collect(),
            next_page_token: next,
        })
    }

    async fn rewards(&self, p: &Principal, req: GetReferrerRewardsRequest) -> ApiResult<ReferrerRewards> {
        let mut v = Violations::default();
        check_id(&mut v, &req.referrer_id, "referrerId");
        v.into_result()?;
        p.require_self(&req.referrer_id, "referrerId")?;
        let size = paging::page_size(req.page_size)?;
        let after = paging::decode_token(&req.page_token)?;
        // Entries first: the balance read after them includes every entry listed (a booking
        // committing between the two reads shows in the balance, never only in the list).
        let mut entries = self
            .store
            .entries(&req.referrer_id, after.as_deref(), i64::from(size) + 1)
            .await?;
        let standing = self.store.standing(&req.referrer_id).await?;
        let next = next_token(&mut entries, size, |e| e.id.clone());
        // Whose program says what comes next: the kind the ledger knows, or the caller's own.
        let kind = standing
            .referrer_kind
            .clone()
            .or_else(|| p.kind.clone().filter(|_| p.sub == req.referrer_id));
        let program = match &kind {
            Some(k) => self.store.active_program(k).await?,
            None => None,
        };
        let currency = if standing.currency.is_empty() {
            program
                .as_ref()
                .map(|p| p.currency.clone())
                .unwrap_or_else(|| "GBP".into())
        } else {
            standing.currency.clone()
        };
        let next_milestone = program
            .as_ref()
            .and_then(|prog| rewards::next_milestone(prog, standing.successful_referrals))
            .map(|t| NextMilestone {
                at: t.at,
                reward: Some(money(t.reward_minor, &currency)),
                badge: t.badge.map(|b| b as i32),
            });
        let tier = convert::tier_name(&standing.badges);
        Ok(ReferrerRewards {
            referrer_id: req.referrer_id.clone(),
            balance: Some(Balance {
                pending: Some(money(standing.pending_minor, &currency)),
                eligible: Some(money(standing.eligible_minor, &currency)),
                paid: Some(money(standing.paid_minor, &currency)),
            }),
            tier: tier.as_deref().and_then(convert::badge).map(|b| b as i32),
            badges: standing
                .badges
                .iter()
                .filter_map(|b| convert::badge(b))
                .map(|b| b as i32)
                .collect(),
            successful_referrals: standing.successful_referrals,
            next_milestone,
            entries: entries
                .iter()
                .map(|e| convert::entry(e, tier.as_deref()))
                .collect(),
            next_page_token: next,
        })
    }

    async fn create_payout(
        &self,
        p: &Principal,
        actor: &Actor,
        req: CreatePayoutRequest,
    ) -> ApiResult<Payout> {
        let mut v = Violations::default();
        check_id(&mut v, &req.referrer_id, "referrerId");
        v.into_result()?;
        p.require_self(&req.referrer_id, "referrerId")?;
        // The payout's id is the audit subject, filled in by the store once it exists.
        let audit = AuditEntry::new(actor, action::PAYOUT_CREATE, "payout", "");
        match self
            .store
            .create_payout(&req.referrer_id, ids::now(), &audit)
            .await?
        {
            PayoutOutcome::Paid(view) => {
                metrics::counter!("incentive_payouts_total").increment(1);
                Ok(convert::payout(&view))
            }
            PayoutOutcome::NothingToPay => Err(ApiError::FailedPrecondition {
                message: format!("{} has no eligible balance to pay", req.referrer_id),
                reason: "NOTHING_TO_PAY",
            }),
        }
    }

    async fn get_payout(&self, p: &Principal, req: GetPayoutRequest) -> ApiResult<Payout> {
        let view = self.store.get_payout(&req.id).await?;
        match view {
            // Another member's payout is not found, rather than forbidden: ids do not leak.
            Some(v) if p.may_act_as(&v.payout.referrer_id) => Ok(convert::payout(&v)),
            _ => Err(ApiError::not_found("payout", &req.id)),
        }
    }
}

/// Trims a page fetched with one row extra and returns the token of the next page.
fn next_token<T>(rows: &mut Vec<T>, size: u32, key: impl Fn(&T) -> String) -> String {
    if rows.len() > size as usize {
        rows.truncate(size as usize);
        rows.last()
            .map(|r| paging::encode_token(&key(r)))
            .unwrap_or_default()
    } else {
        String::new()
    }
}

fn check_id(v: &mut Violations, value: &str, field: &str) {
    if value.trim().is_empty() {
        v.add(field, "is required");
    } else {
        input::line(v, value, MAX_ID_LEN, field);
    }
}

fn optional_instant(
    v: &mut Violations,
    ts: Option<&referral_proto::Timestamp>,
    field: &str,
) -> Option<DateTime<Utc>> {
    let ts = ts?;
    let t = from_ts(ts);
    if t.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    t
}

fn required_instant(
    v: &mut Violations,
    ts: Option<&referral_proto::Timestamp>,
    field: &str,
) -> Option<DateTime<Utc>> {
    if ts.is_none() {
        v.add(field, "is required (RFC 3339)");
        return None;
    }
    optional_instant(v, ts, field)
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
            self.put_program(&p, &a, r).await
        })
        .await
    }

    async fn get_reward_program(
        &self,
        req: Request<GetRewardProgramRequest>,
    ) -> Result<Response<RewardProgram>, Status> {
        Principal::of(&req)?;
        reply(self.get_program(req.into_inner()).await)
    }

    async fn list_reward_programs(
        &self,
        req: Request<ListRewardProgramsRequest>,
    ) -> Result<Response<ListRewardProgramsResponse>, Status> {
        Principal::of(&req)?;
        reply(self.list_programs(req.into_inner()).await)
    }

    async fn simulate_reward_program(
        &self,
        req: Request<SimulateRewardProgramRequest>,
    ) -> Result<Response<SimulationResult>, Status> {
        let p = Principal::of(&req)?;
        reply(self.simulate(&p, req.into_inner()).await)
    }

    async fn create_campaign(
        &self,
        req: Request<CreateCampaignRequest>,
    ) -> Result<Response<Campaign>, Status> {
        self.write(req, "CreateCampaign", |p, a, r| async move {
            self.create_campaign(&p, &a, r).await
        })
        .await
    }

    async fn list_campaigns(
        &self,
        req: Request<ListCampaignsRequest>,
    ) -> Result<Response<ListCampaignsResponse>, Status> {
        Principal::of(&req)?;
        reply(self.list_campaigns(req.into_inner()).await)
    }

    async fn get_referrer_rewards(
        &self,
        req: Request<GetReferrerRewardsRequest>,
    ) -> Result<Response<ReferrerRewards>, Status> {
        let p = Principal::of(&req)?;
        reply(self.rewards(&p, req.into_inner()).await)
    }

    async fn create_payout(&self, req: Request<CreatePayoutRequest>) -> Result<Response<Payout>, Status> {
        self.write(req, "CreatePayout", |p, a, r| async move {
            self.create_payout(&p, &a, r).await
        })
        .await
    }

    async fn get_payout(&self, req: Request<GetPayoutRequest>) -> Result<Response<Payout>, Status> {
        let p = Principal::of(&req)?;
        reply(self.get_payout(&p, req.into_inner()).await)
    }
}
