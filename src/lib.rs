//! rollgate: a rules-and-policy engine that enforces a production rollout playbook on the
//! issue trackers teams already use. See DESIGN.md for the event path.

pub mod app;
pub mod backfill;
pub mod clock;
pub mod config;
pub mod decide;
pub mod doctor;
pub mod explain;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod policy;
pub mod process;
pub mod queue;
pub mod report;
pub mod roles;
pub mod schedule;
pub mod store;
pub mod tools;
pub mod tracker;
