//! The error body of every client error: an RFC 9457 problem detail.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem detail (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A stable identifier of the problem kind, e.g. `/problems/policy-violation`.
    #[serde(rename = "type")]
    #[schema(example = "/problems/policy-violation")]
    pub type_: String,
    /// Short summary of the problem kind.
    #[schema(example = "Refused by the security policy")]
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 422)]
    pub status: u16,
    /// What exactly was wrong.
    #[schema(example = "argument 2 `../secret.mp4`: path escapes the data directory")]
    pub detail: String,
    /// For command errors: the 1-based position of the offending argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 2)]
    pub argument_position: Option<usize>,
    /// For command errors: the offending argument as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "../secret.mp4")]
    pub argument: Option<String>,
    /// For commands refused by the security policy, and file paths refused by the files API:
    /// the rule's stable id (`path-escapes`, `protocol`, `forbidden-option`,
    /// `forbidden-filter`, `forbidden-format`, `name-too-long`, ...; see docs/security.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "path-escapes")]
    pub rule: Option<String>,
    /// For `idempotency-key-reused`: the job the `Idempotency-Key` belongs to (submitted
    /// with a different request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "job_3f9a0c1d2e4b5a69")]
    pub job_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_round_trip_and_omit_absent_argument_fields() {
        let problem = Problem {
            type_: "/problems/not-found".to_owned(),
            title: "Not found".to_owned(),
            status: 404,
            detail: "job job_0000000000000000 not found".to_owned(),
            argument_position: None,
            argument: None,
            rule: None,
            job_id: None,
        };
        let json = serde_json::to_value(&problem).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"type": "/problems/not-found", "title": "Not found", "status": 404,
                               "detail": "job job_0000000000000000 not found"})
        );
        assert_eq!(serde_json::from_value::<Problem>(json).expect("reads"), problem);
    }
}
