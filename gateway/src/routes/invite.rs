//! invite-svc's resources: referral codes and the `/r/{code}` redirect, invitations and
//! referrers' tiers, clicks, signups, conversions, the landing-page script and the email
//! providers' delivery webhooks (docs/api.md).

use axum::http::Method;
use referral_common::auth::Scope;
use referral_proto::invite::v1 as invite;

use super::{
    redirect,
    route::{Answer, Body, Route, Rpc, api, unary},
    sdk, webhook,
};

const INVITE: &str = "referral.invite.v1.InviteService";

const CODES: &str = "Referral codes";
const INVITATIONS: &str = "Invitations";
const TRACKING: &str = "Tracking and attribution";

/// invite-svc's routes: referral codes (and `/r/{code}`), invitations, tracking and attribution.
pub fn routes() -> Vec<Route> {
    use Body::{None as NoBody, Whole};
    use Method as M;
    vec![
        // invite-svc: referral codes
        api(M::POST, "/v1/referral-codes", "Create a memorable referral code", CODES,
            Rpc::new(INVITE, "CreateReferralCode", Whole),
            unary!(invite.create_referral_code(invite::CreateReferralCodeRequest))),
        api(M::GET, "/v1/referral-codes/{code}", "A referral code with its click, signup and conversion counts", CODES,
            Rpc::new(INVITE, "GetReferralCode", NoBody),
            unary!(invite.get_referral_code(invite::GetReferralCodeRequest))),
        Route::new(M::GET, "/r/{code}", "Redirect", "Follow a referral link: 302 to its landing page, setting the attribution cookie")
            .tag(CODES)
            .answer(Answer::Redirect)
            .raw(|s, r| Box::pin(redirect::handle(s, r))),
        // invite-svc: invitations
        api(M::POST, "/v1/invitations", "Create an invitation (fraud-checked, scheduled, paced by quota)", INVITATIONS,
            Rpc::new(INVITE, "CreateInvitation", Whole),
            unary!(invite.create_invitation(invite::CreateInvitationRequest)))
            .key_scope(Scope::InvitationsWrite),
        api(M::POST, "/v1/invitations:batchCreate", "Create up to 100 invitations, each judged alone", INVITATIONS,
            Rpc::new(INVITE, "BatchCreateInvitations", Whole),
            unary!(invite.batch_create_invitations(invite::BatchCreateInvitationsRequest)))
            .key_scope(Scope::InvitationsWrite),
        api(M::GET, "/v1/invitations/{id}", "An invitation", INVITATIONS,
            Rpc::new(INVITE, "GetInvitation", NoBody),
            unary!(invite.get_invitation(invite::GetInvitationRequest))),
        api(M::GET, "/v1/invitations", "A referrer's invitations, newest first", INVITATIONS,
            Rpc::new(INVITE, "ListInvitations", NoBody),
            unary!(invite.list_invitations(invite::ListInvitationsRequest))),
        api(M::POST, "/v1/invitations/{id}:cancel", "Cancel an invitation before it is sent", INVITATIONS,
            Rpc::new(INVITE, "CancelInvitation", Whole),
            unary!(invite.cancel_invitation(invite::CancelInvitationRequest))),
        api(M::PUT, "/v1/referrers/{id}/tier", "Set a referrer's sending tier (admin)", INVITATIONS,
            Rpc::new(INVITE, "SetReferrerTier", Whole).param("id", "referrerId"),
            unary!(invite.set_referrer_tier(invite::SetReferrerTierRequest))),
        api(M::GET, "/v1/referrers/{id}", "A referrer's tier and queued invitations", INVITATIONS,
            Rpc::new(INVITE, "GetReferrer", NoBody).param("id", "referrerId"),
            unary!(invite.get_referrer(invite::GetReferrerRequest))),
        // invite-svc: tracking and attribution
        api(M::POST, "/v1/clicks", "Record a click on a referral code (the client IP is the connection's)", TRACKING,
            Rpc::new(INVITE, "RecordClick", Whole).client_fields(),
            unary!(invite.record_click(invite::RecordClickRequest))),
        api(M::POST, "/v1/signups", "Record a signup and attribute it", TRACKING,
            Rpc::new(INVITE, "RecordSignup", Whole).client_fields().cookie_field(redirect::CLICK_COOKIE, "clickId"),
            unary!(invite.record_signup(invite::RecordSignupRequest)))
            .key_scope(Scope::SignupsWrite),
        Route::new(M::GET, "/v1/sdk.js", "Sdk", "The landing-page script: keeps the click id from the landing URL in a first-party cookie and offers referralMesh.clickId()")
            .tag(TRACKING)
            .answer(Answer::Text("text/javascript"))
            .raw(|s, r| Box::pin(sdk::script(s, r))),
        api(M::POST, "/v1/conversions", "Record a paid conversion", TRACKING,
            Rpc::new(INVITE, "RecordConversion", Whole),
            unary!(invite.record_conversion(invite::RecordConversionRequest)))
            .key_scope(Scope::ConversionsWrite),
        Route::new(M::POST, "/v1/webhooks/email/{provider}", "HandleEmailWebhook",
            "Delivery events from resend, sendgrid, mailgun or postmark, verified by the provider's signature")
            .tag(TRACKING)
            .answer(Answer::Message("referral.invite.v1.EmailWebhookResponse"))
            .raw_body("The provider's webhook payload, exactly as sent (it is signature-checked)")
            .raw(|s, r| Box::pin(webhook::handle(s, r))),
    ]
}
