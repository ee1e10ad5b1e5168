//! Integration tests of the `jobs` crate.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod claims;
mod cluster;
mod concat_lists;
mod encoded;
mod events;
mod exec_limits;
mod files;
mod fixture;
mod full_disk;
mod globs;
mod hls_variants;
mod idempotency;
mod media;
mod nodes;
mod orphans;
mod output_meta;
mod outputs;
mod ownership;
mod postgres;
mod probe;
mod runner;
mod s3_client;
mod service;
mod stage_sweep;
mod staging;
mod store;
mod store_faults;
mod tmpfs;
mod webhooks;
