//! incentive-svc's rules as plain functions over plain data: programs (validation and the
//! defaults), what a conversion earns (percentages, milestones, badges, campaigns within
//! their cap), what a fraud decision does to a reward, and simulations.

pub mod money;
pub mod program;
pub mod rewards;
pub mod states;

pub use program::{Program, Tier};
