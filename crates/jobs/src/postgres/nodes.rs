//! The node registry of [`PgStore`] ([`crate::nodes`]): one row per node in `nodes`.
//! Heartbeats are stamped and compared by the database's clock (as leases are), so nodes whose
//! clocks differ agree on which node is lost.

use std::time::Duration;

use super::{PgStore, db};
use crate::nodes::{Heartbeat, Node, NodeRegistration};
use crate::sqlite::rows::{self, NodeRow, json, now};
use crate::store::StoreError;

/// $1 id, $2 role, $3 labels, $4 host, $5 version, $6 ffmpeg version, $7 capabilities, $8 slots,
/// $9 started_at: the node's row, as new (not draining, no running job).
const REGISTER: &str = "INSERT INTO nodes (id, role, labels, host, version, ffmpeg_version, capabilities, slots, \
                        running_jobs, draining, started_at, heartbeat_at) \
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '[]', FALSE, $9, now()) \
                        ON CONFLICT (id) DO UPDATE SET role = excluded.role, labels = excluded.labels, \
                          host = excluded.host, version = excluded.version, ffmpeg_version = excluded.ffmpeg_version, \
                          capabilities = excluded.capabilities, slots = excluded.slots, running_jobs = '[]', \
                          draining = FALSE, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at";
/// $1 id, $2 draining, $3 running jobs (JSON).
const HEARTBEAT: &str = "UPDATE nodes SET heartbeat_at = now(), draining = $2, running_jobs = $3 WHERE id = $1";
/// $1 seconds without a heartbeat after which a node is lost.
const NODES: &str = "SELECT id, role, labels, host, version, ffmpeg_version, slots, running_jobs, draining, started_at, \
                       (extract(epoch FROM heartbeat_at) * 1000000)::bigint AS heartbeat_at, \
                       heartbeat_at <= now() - make_interval(secs => $1) AS lost \
                     FROM nodes ORDER BY id";
const CAPABILITIES: &str = "SELECT capabilities FROM nodes WHERE id = $1";
const REMOVE: &str = "DELETE FROM nodes WHERE id = $1";
/// $1 seconds: nodes silent for longer go.
const PRUNE: &str = "DELETE FROM nodes WHERE heartbeat_at < now() - make_interval(secs => $1)";
/// Ages beyond this (ten years) count as this: PostgreSQL's intervals have bounds.
const MAX_AGE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl PgStore {
    pub(super) async fn register_node_row(&self, node: &NodeRegistration) -> Result<(), StoreError> {
        let capabilities = node.capabilities.as_deref().map(json).transpose()?;
        let result = sqlx::query(REGISTER)
            .bind(&node.id)
            .bind(node.role.as_str())
            .bind(json(&node.labels)?)
            .bind(&node.host)
            .bind(&node.version)
            .bind(&node.ffmpeg_version)
            .bind(capabilities)
            .bind(i64::from(node.slots))
            .bind(now().1)
            .execute(&self.pool)
            .await
            .map_err(db);
        self.health.record(&result);
        result.map(drop)
    }

    pub(super) async fn heartbeat_row(&self, id: &str, beat: &Heartbeat) -> Result<bool, StoreError> {
        let running: Vec<&str> = beat.running_jobs.iter().map(|j| j.as_str()).collect();
        let result = sqlx::query(HEARTBEAT)
            .bind(id)
            .bind(beat.draining)
            .bind(json(&running)?)
            .execute(&self.pool)
            .await
            .map_err(db);
        self.health.record(&result);
        Ok(result?.rows_affected() > 0)
    }

    pub(super) async fn node_rows(&self, lost_after: Duration) -> Result<Vec<Node>, StoreError> {
        let rows: Vec<NodeRow> = sqlx::query_as(NODES)
            .bind(lost_after.min(MAX_AGE).as_secs_f64())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter().map(Node::try_from).collect()
    }

    pub(super) async fn node_capabilities_row(
        &self,
        id: &str,
    ) -> Result<Option<ffmpeg_core::capabilities::Capabilities>, StoreError> {
        let text: Option<Option<String>> =
            sqlx::query_scalar(CAPABILITIES).bind(id).fetch_optional(&self.pool).await.map_err(db)?;
        text.flatten().as_deref().map(rows::capabilities).transpose()
    }

    pub(super) async fn remove_node_row(&self, id: &str) -> Result<(), StoreError> {
        let result = sqlx::query(REMOVE).bind(id).execute(&self.pool).await.map_err(db);
        self.health.record(&result);
        result.map(drop)
    }

    pub(super) async fn prune_node_rows(&self, older_than: Duration) -> Result<u64, StoreError> {
        let result =
            sqlx::query(PRUNE).bind(older_than.min(MAX_AGE).as_secs_f64()).execute(&self.pool).await.map_err(db);
        self.health.record(&result);
        Ok(result?.rows_affected())
    }
}
