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
    /// `created_at`, `started_at` and `completed_at` in seconds since the Unix epoch.
    pub(super) times: [Option<f64>; 3],
}

impl JobState {
    /// The state of `job`, a job as the API writes it (`GET /jobs/{id}`, a stream's `status`
    /// event); an error when it has no `status`.
    pub(super) fn from_json(job: &serde_json::Value) -> std::result::Result<Self, &'static str> {
        let status = job["status"].as_str().ok_or("no status")?.to_owned();
        let time = |field: &str| job[field].as_str().and_then(unix_seconds);
        Ok(JobState {
            status,
            error: job["error"].as_str().map(str::to_owned),
            times: [time("created_at"), time("started_at"), time("completed_at")],
        })
    }

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

    /// `POST /jobs/{id}/cancel`. Anything but 200 is an error.
    pub(super) fn cancel(&self, id: &str) -> Result {
        let mut resp = self.agent.post(format!("{}/jobs/{id}/cancel", self.base)).send_empty()?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string()?;
        if status != 200 {
            return Err(format!("POST /jobs/{id}/cancel answered {status}: {text}").into());
        }
        Ok(())
    }

    /// `GET /jobs/{id}`: the job's status and error.
    pub(super) fn job(&self, id: &str) -> Result<JobState> {
        let mut resp = self.agent.get(format!("{}/jobs/{id}", self.base)).call()?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string()?;
        if status != 200 {
            return Err(format!("GET /jobs/{id} answered {status}: {text}").into());
        }
        JobState::from_json(&serde_json::from_str(&text)?).map_err(|e| format!("{e} in {text}").into())
    }
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time as the API writes it
/// (`2026-11-29T12:43:20.21576Z`, also with `+00:00`); `None` for anything else.
pub(super) fn unix_seconds(text: &str) -> Option<f64> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.splitn(3, ':');
    let (h, min) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

#[cfg(test)]
mod tests {
    use super::unix_seconds;

    #[test]
    fn reads_api_times() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(unix_seconds("2000-03-01T00:00:01+00:00"), Some(951_868_801.0));
        let t = unix_seconds("2026-11-29T12:43:20.21576Z").unwrap_or_default();
        assert!((t - 1_795_956_200.215_76).abs() < 1e-3, "{t}");
        assert_eq!(unix_seconds("2026-11-29 12:43:20"), None);
    }
}
