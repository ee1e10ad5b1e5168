//! Integration tests of the server: the router in-process (`api`), the real binary end to end
//! (`e2e`), the committed OpenAPI document (`openapi`), and the client subcommands handed on to
//! the `ffmpeg-worker-client` program (`client_command`; the client itself is tested in its crate).
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod api;
mod client_command;
mod cluster;
mod database;
mod docker;
mod e2e;
mod e2e_s3;
mod events;
mod files;
mod files_app;
mod files_rules;
mod files_s3;
mod files_s3_keys;
mod full_disk;
mod idempotency;
mod lifecycle;
mod media;
mod nodes;
mod openapi;
mod output_places;
mod probe;
mod queries;
mod run_options;
mod security;
mod slow_clients;
mod stream_sockets;
mod support;
#[path = "../../../jobs/tests/it/tmpfs.rs"]
mod tmpfs;
mod webhooks;
