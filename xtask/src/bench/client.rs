//! A blocking client of the job API for the benches: submit a job, read one, check health.
//!
//! It uses `ureq` (blocking, no async runtime, no TLS here) with one kept-alive connection, so a
//! request on loopback costs the bench a fraction of a millisecond.

use std::time::Duration;

use crate::Result;

/// A job's status and, when it failed, its error.
pub(super) struct JobState {
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub(super) status: String,
    /// The job's `error` field.
    pub(super) error: Option<String>,
}

impl JobState {
    /// Whether the job has reached a final state.
    pub(super) fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// A client of one server.
pub(super) struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:PORT`).
    pub(super) fn new(base: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        Self { agent: config.into(), base: base.to_owned() }
    }

    /// Whether `GET /health` answers 200.
    pub(super) fn health(&self) -> bool {
        self.agent
            .get(format!("{}/health", self.base))
            .call()
            .is_ok_and(|mut r| r.status() == 200 && r.body_mut().read_to_string().is_ok())
    }

    /// `POST /jobs {"command": command}`; the new job's id. Anything but 201 is an error.
    pub(super) fn submit(&self, command: &str) -> Result<String> {
        let body = serde_json::json!({ "command": command }).to_string();
        let mut resp = self
            .agent
            .post(format!("{}/jobs", self.base))
            .header("content-type", "application/json")
            .send(body.as_str())?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string()?;
        if status != 201 {
            return Err(format!("POST /jobs `{command}` answered {status}: {text}").into());
        }
        let job: serde_json::Value = serde_json::from_str(&text)?;
        let id = job["id"].as_str().ok_or_else(|| format!("no id in {text}"))?;
        Ok(id.to_owned())
    }

    /// `GET /jobs/{id}`: the job's status and error.
    pub(super) fn job(&self, id: &str) -> Result<JobState> {
        let mut resp = self.agent.get(format!("{}/jobs/{id}", self.base)).call()?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string()?;
        if status != 200 {
            return Err(format!("GET /jobs/{id} answered {status}: {text}").into());
        }
        let job: serde_json::Value = serde_json::from_str(&text)?;
        let state = job["status"].as_str().ok_or_else(|| format!("no status in {text}"))?.to_owned();
        Ok(JobState { status: state, error: job["error"].as_str().map(str::to_owned) })
    }
}
