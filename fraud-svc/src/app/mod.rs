//! fraud-svc's use cases, one module each: the one place that orchestrates the domain's rules,
//! the store and the outgoing events, shared by every adapter that triggers it.
//!
//! - [`assess_subject`]: assess an invitation, a signup or a conversion (gRPC `Assess*`, and
//!   the events below);
//! - [`apply_invite_events`]: what each of invite-svc's events does here (the consumer);
//! - [`review_cases`]: list and read review cases with their assessment and ring;
//! - [`resolve_case`]: an admin's APPROVE / REJECT of a case;
//! - [`get_assessment`]: the assessment of a subject, by the key it was asked with;
//! - [`observe_person`]: identities and ring links of a person (part of the above).

pub mod apply_invite_events;
pub mod assess_subject;
pub mod get_assessment;
pub mod observe_person;
pub mod privacy;
pub mod resolve_case;
pub mod review_cases;
