//! Emergency staffing: which crew each fault needs (`rules`), how important each fault is
//! (`priority`), who may take which slot and at what cost (`plan`), the exact min-cost
//! assignment (`solver`, checked against `reference`), and call-centre sizing (`erlang`).
//!
//! The solver is a pure function of (slots, staff, pins): the same inputs give the same plan,
//! which is what makes a coordinator's override stick across re-solves.

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
