//! The result of a remote command as the Kubernetes `metav1.Status` JSON that kubectl and
//! client-go read from the error channel (protocol `v4.channel.k8s.io` and later).

use serde::Serialize;

/// `metav1.Status`, with only the fields that remote command results use, in the field order
/// that Go's encoder writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    metadata: ListMeta,
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

/// An empty `metav1.ListMeta`, which Go writes as `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ListMeta {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    message: String,
}

impl Status {
    /// Returns the status of a command that exited with code 0, or of an attach session that
    /// ended normally.
    pub fn success() -> Self {
        Status {
            metadata: ListMeta {},
            status: "Success",
            message: String::new(),
            reason: "",
            details: None,
            code: None,
        }
    }

    /// Returns the status of a command that exited with a non-zero code. client-go turns it
    /// into an `ExitError` with the code from `details.causes[reason=ExitCode]`.
    pub fn exit_code(command: &[String], exit_code: i32) -> Self {
        Status {
            metadata: ListMeta {},
            status: "Failure",
            message: format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {exit_code}",
                command.join(" ")
            ),
            reason: "NonZeroExitCode",
            details: Some(Details {
                causes: vec![Cause {
                    reason: "ExitCode",
                    message: exit_code.to_string(),
                }],
            }),
            code: None,
        }
    }

    /// Returns the status of a session that failed for a reason other than the command's exit
    /// code, written as the API server's `InternalError`.
    pub fn internal_error(error: &str) -> Self {
        Status {
            metadata: ListMeta {},
            status: "Failure",
            message: format!("Internal error occurred: {error}"),
            reason: "InternalError",
            details: Some(Details {
                causes: vec![Cause {
                    reason: "",
                    message: error.to_string(),
                }],
            }),
            code: Some(500),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a status always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_json() {
        assert_eq!(
            String::from_utf8(Status::success().to_json()).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
    }

    #[test]
    fn exit_code_json() {
        let command = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];

        let json = String::from_utf8(Status::exit_code(&command, 3).to_json()).unwrap();

        assert_eq!(
            json,
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
    }

    #[test]
    fn internal_error_json_has_code() {
        let json = String::from_utf8(Status::internal_error("boom").to_json()).unwrap();

        assert!(json.contains(r#""reason":"InternalError""#), "{json}");
        assert!(json.ends_with(r#""code":500}"#), "{json}");
    }
}
