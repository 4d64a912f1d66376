//! The service's types and rules, with no I/O.

pub mod book;
pub mod contract;
pub mod product;
pub mod quote;
pub mod schedule;
