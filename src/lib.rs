//! scrapewheel: a synchronous Prometheus scrape agent with a durable spool.
//!
//! The modules follow the data flow in DESIGN.md: config → discovery → coordinator →
//! pool → wheel → worker (scrape, parse, relabel) → append → spool → remote_write, with
//! web and signals on the side.

pub mod labels;
pub mod wire;
