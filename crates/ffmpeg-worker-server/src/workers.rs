//! `GET /workers`: the node registry, as glue from [`jobs::Jobs::nodes`] to the wire.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, AppJson, NoQuery};
use crate::wire::{WorkerResponse, worker_response};

/// The route of this module.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_workers))
}

/// List the nodes
///
/// Every node (server process) sharing this server's job store, API nodes included, sorted by
/// id: its role, labels, host, versions, slots, the jobs it ran at its latest heartbeat, and
/// its state: `active`, `draining` (shutting down), or `lost` (no heartbeat for the lease,
/// `LEASE_SECONDS`; removed after `NODE_RETENTION`). A node stopped gracefully removes itself.
#[utoipa::path(
    get, path = "/workers", tag = "operations",
    responses((status = 200, description = "The nodes, by id", body = [WorkerResponse]))
)]
pub(crate) async fn list_workers(
    State(state): State<AppState>,
    _: NoQuery,
) -> Result<AppJson<Vec<WorkerResponse>>, ApiError> {
    let nodes = state.jobs.nodes().await?;
    Ok(AppJson(nodes.into_iter().map(worker_response).collect()))
}
