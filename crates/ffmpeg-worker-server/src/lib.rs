//! `ffmpeg-worker-server`: the HTTP face of ffmpeg-worker. Glue only: routing, extractors,
//! wire types, configuration and start-up; job rules live in the `jobs` crate.
//!
//! [`app`] builds the router; the `ffmpeg-worker` binary (`main.rs`) parses configuration,
//! opens the store, starts the workers and serves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use jobs::Jobs;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub mod config;
pub mod error;
pub mod serve;
mod routes;
pub mod wire;

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The job service.
    pub jobs: Arc<Jobs>,
    accepting: Arc<AtomicBool>,
}

impl AppState {
    /// State over `jobs`, accepting submissions.
    pub fn new(jobs: Arc<Jobs>) -> AppState {
        AppState { jobs, accepting: Arc::new(AtomicBool::new(true)) }
    }

    /// Whether new jobs are accepted (false once shutdown began).
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Stops accepting new jobs: `POST /jobs` answers 503 from now on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Relaxed);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ffmpeg-worker",
        description = "Run ffmpeg jobs over HTTP. Send an ffmpeg command line (without the word `ffmpeg`); \
paths are relative to the server's data directory. The service checks the command against ffmpeg's \
grammar and a sandbox, queues it durably, runs it, and reports live progress.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "jobs", description = "Submit, inspect and manage ffmpeg jobs"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health))
        .routes(routes!(routes::create_job, routes::list_jobs))
        .routes(routes!(routes::get_job, routes::delete_job))
        .routes(routes!(routes::cancel_job))
        .routes(routes!(routes::job_log))
}

/// The OpenAPI 3.1 document of the API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().into_openapi()
}

/// [`openapi`] as pretty-printed JSON, as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The application router: the API, `/openapi.json` and Swagger UI at `/docs`.
pub fn app(state: AppState) -> Router {
    let (api_router, api) = router().split_for_parts();
    api_router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
