//! Emergency staffing: which crew each fault needs (`rules`), how important each fault is
//! (`priority`), who may take which slot and at what cost (`plan`), the exact min-cost
//! assignment (`solver`, checked against `reference`, kept warm between re-plans by `warm`),
//! and call-centre sizing (`erlang`).
//!
//! The plan is a function of (slots, staff, pins): the warm planner reaches the cold solve's
//! optimum, and pins are inputs, which is what makes a coordinator's override stick across
//! re-solves.

pub mod callcenter;
pub mod commands;
pub mod erlang;
pub mod plan;
pub mod priority;
pub mod reference;
pub mod rules;
pub mod service;
pub mod settings;
pub mod solver;
pub mod surge;
pub mod warm;
