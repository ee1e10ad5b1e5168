//! Integration tests of the server: the router in-process (`api`), the real binary end to end
//! (`e2e`), and the committed OpenAPI document (`openapi`).
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod api;
mod cli;
mod docker;
mod e2e;
mod lifecycle;
mod openapi;
mod security;
mod slow_clients;
mod support;
