//! scrapewheel: a synchronous Prometheus scrape agent with a durable spool.
//!
//! The modules follow the data flow in DESIGN.md: config → discovery → coordinator →
//! pool (target) → wheel → worker (scrape, parse, relabel) → append → spool →
//! remote_write (and export), with web and signals on the side, and agent wiring them
//! together in order.

pub mod agent;
pub mod append;
pub mod budget;
pub(crate) mod bytes;
pub mod config;
pub mod coordinator;
pub mod discovery;
pub mod export;
pub mod hash;
pub mod labels;
pub mod log;
pub mod metrics;
pub mod parse;
pub mod pool;
pub mod priority;
pub mod queue;
pub mod relabel;
pub mod remote_write;
pub mod scrape;
pub mod signals;
pub mod spool;
pub mod target;
pub mod time;
pub mod web;
pub mod wheel;
pub mod wire;
pub mod worker;
