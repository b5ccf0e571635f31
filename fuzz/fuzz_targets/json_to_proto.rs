//! The gateway's JSON -> proto request mapping (`gateway::mapping::json::{parse, decode}`, pbjson):
//! arbitrary bytes as a request body never panic, and whatever decodes survives the trip
//! back to JSON (what `json::respond` does) and decodes to the same message.
#![no_main]

use gateway::mapping::json;
use libfuzzer_sys::fuzz_target;
use referral_proto::{analytics::v1 as analytics, incentive::v1 as incentive, invite::v1 as invite};

fn check<T>(value: serde_json::Value)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(message) = json::decode::<T>(value) else {
        return;
    };
    let rendered = serde_json::to_value(&message).expect("a decoded message renders as JSON");
    let again: T = json::decode(rendered.clone())
        .unwrap_or_else(|e| panic!("rendered JSON {rendered} does not decode again: {}", e.message));
    assert_eq!(again, message, "JSON round trip changed the message");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let Ok(value) = json::parse(body) else {
        return;
    };
    match which % 12 {
        0 => check::<invite::CreateInvitationRequest>(value),
        1 => check::<invite::BatchCreateInvitationsRequest>(value),
        2 => check::<invite::RecordSignupRequest>(value),
        3 => check::<invite::RecordConversionRequest>(value),
        4 => check::<invite::RecordClickRequest>(value),
        5 => check::<invite::CreateReferralCodeRequest>(value),
        6 => check::<invite::ListInvitationsRequest>(value),
        7 => check::<incentive::PutRewardProgramRequest>(value),
        8 => check::<incentive::SimulateRewardProgramRequest>(value),
        9 => check::<incentive::CreatePayoutRequest>(value),
        10 => check::<analytics::TimeseriesRequest>(value),
        _ => check::<analytics::CreateWebhookEndpointRequest>(value),
    }
});
