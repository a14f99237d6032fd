//! The AWS error shape, and the one mapping from what the gRPC handlers and the SigV4 check
//! answer to it.
//!
//! botocore's rest-json parser reads the error code from the `x-amzn-ErrorType` header and the
//! message from the body's `message`, so an error is: an HTTP status, that header, and
//! `{"message": ...}` (plus `resourceType` / `limitType` where the model has them).
//!
//! | gRPC code (reason) | AWS error | status |
//! |---|---|---|
//! | INVALID_ARGUMENT, OUT_OF_RANGE, UNIMPLEMENTED | BadRequestException | 400 |
//! | FAILED_PRECONDITION (rules 4, 6, 7, 8: AWS answers these BadRequestException too) | BadRequestException | 400 |
//! | RESOURCE_EXHAUSTED `MULTI_LEVEL_MAPPING_LIMIT` (a rule, not throttling) | BadRequestException | 400 |
//! | RESOURCE_EXHAUSTED `REQUEST_TOO_LARGE` | BadRequestException | 413 |
//! | RESOURCE_EXHAUSTED (other) | TooManyRequestsException (`limitType` = reason) | 429 |
//! | NOT_FOUND | NotFoundException (`resourceType`) | 404 |
//! | ALREADY_EXISTS, ABORTED (`expected_revision`) | ConflictException | 409 |
//! | PERMISSION_DENIED | AccessDeniedException | 403 |
//! | UNAUTHENTICATED | UnrecognizedClientException | 403 |
//! | UNAVAILABLE | ServiceUnavailableException | 503 |
//! | anything else | InternalFailure | 500 |
//!
//! SigV4 refusals: no credentials -> MissingAuthenticationTokenException, an unknown key ->
//! UnrecognizedClientException, a bad signature or scope or time -> InvalidSignatureException,
//! a malformed `Authorization` -> IncompleteSignatureException (all 403); a body that is not
//! what `X-Amz-Content-SHA256` declares -> XAmzContentSHA256Mismatch (400).

use http::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use super::sigv4::SigError;

/// An error as an AWS service sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `x-amzn-ErrorType`, e.g. `NotFoundException`.
    pub code: &'static str,
    /// The human message.
    pub message: String,
    /// An extra body member of the model's shape (`resourceType`, `limitType`).
    pub extra: Option<(&'static str, String)>,
}

impl AwsError {
    /// A `BadRequestException` (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        AwsError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    /// A `NotFoundException` (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        AwsError::new(StatusCode::NOT_FOUND, "NotFoundException", message)
    }

    /// An error of any code and status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// The body: `{"message": ...}` and the extra member, if any.
    pub fn body(&self) -> Value {
        let mut body = json!({ "message": self.message });
        if let Some((k, v)) = &self.extra {
            body[*k] = Value::String(v.clone());
        }
        body
    }
}

/// The `resourceType` of a NOT_FOUND reason.
fn resource_type(reason: &str) -> Option<&'static str> {
    match reason {
        "API_NOT_FOUND" => Some("Api"),
        "STAGE_NOT_FOUND" => Some("Stage"),
        "DOMAIN_NAME_NOT_FOUND" => Some("DomainName"),
        "API_MAPPING_NOT_FOUND" => Some("ApiMapping"),
        _ => None,
    }
}

impl From<tonic::Status> for AwsError {
    fn from(s: tonic::Status) -> Self {
        let reason = s
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default();
        let message = s.message().to_string();
        let (status, code) = match (s.code(), reason.as_str()) {
            (Code::InvalidArgument | Code::OutOfRange | Code::Unimplemented, _)
            | (Code::FailedPrecondition, _)
            | (Code::ResourceExhausted, "MULTI_LEVEL_MAPPING_LIMIT") => {
                (StatusCode::BAD_REQUEST, "BadRequestException")
            }
            (Code::ResourceExhausted, "REQUEST_TOO_LARGE") => {
                (StatusCode::PAYLOAD_TOO_LARGE, "BadRequestException")
            }
            (Code::ResourceExhausted, _) => {
                let mut e = AwsError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    message,
                );
                e.extra = Some(("limitType", reason));
                return e;
            }
            (Code::NotFound, _) => {
                let mut e = AwsError::not_found(message);
                e.extra = resource_type(&reason).map(|t| ("resourceType", t.to_string()));
                return e;
            }
            (Code::AlreadyExists | Code::Aborted, _) => (StatusCode::CONFLICT, "ConflictException"),
            (Code::PermissionDenied, _) => (StatusCode::FORBIDDEN, "AccessDeniedException"),
            (Code::Unauthenticated, _) => (StatusCode::FORBIDDEN, "UnrecognizedClientException"),
            (Code::Unavailable, _) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure"),
        };
        AwsError::new(status, code, message)
    }
}

impl From<crate::error::Error> for AwsError {
    fn from(e: crate::error::Error) -> Self {
        tonic::Status::from(e).into()
    }
}

impl From<SigError> for AwsError {
    fn from(e: SigError) -> Self {
        let forbidden = |code, message: String| AwsError::new(StatusCode::FORBIDDEN, code, message);
        match e {
            SigError::Missing => forbidden(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token".into(),
            ),
            SigError::Incomplete(m) => forbidden("IncompleteSignatureException", m),
            SigError::Invalid(m) => forbidden("InvalidSignatureException", m),
            SigError::Mismatch {
                canonical_request,
                string_to_sign,
            } => forbidden(
                "InvalidSignatureException",
                format!(
                    "The request signature we calculated does not match the signature you provided. \
                     Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n\
                     The Canonical String for this request should have been\n'{canonical_request}'\n\n\
                     The String-to-Sign should have been\n'{string_to_sign}'\n"
                ),
            ),
            SigError::ContentSha256Mismatch => AwsError::new(
                StatusCode::BAD_REQUEST,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ),
        }
    }
}

/// The error for an access key id no `[[access_keys]]` entry has.
pub fn unknown_access_key() -> AwsError {
    AwsError::new(
        StatusCode::FORBIDDEN,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn maps_every_code_once() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (
                Error::invalid("api_mapping_key", "bad"),
                400,
                "BadRequestException",
            ),
            (
                Error::NotFound {
                    reason: "STAGE_NOT_FOUND",
                    message: "Invalid stage identifier specified: x".into(),
                },
                404,
                "NotFoundException",
            ),
            (
                Error::AlreadyExists {
                    reason: "MAPPING_KEY_CONFLICT",
                    message: "exists".into(),
                },
                409,
                "ConflictException",
            ),
            (
                Error::FailedPrecondition {
                    reason: "PROTOCOL_CONFLICT",
                    message: "mix".into(),
                },
                400,
                "BadRequestException",
            ),
            (
                Error::Aborted {
                    reason: "REVISION_MISMATCH",
                    message: "stale".into(),
                },
                409,
                "ConflictException",
            ),
            (
                Error::ResourceExhausted {
                    reason: "MULTI_LEVEL_MAPPING_LIMIT",
                    message: "full".into(),
                },
                400,
                "BadRequestException",
            ),
            (
                Error::ResourceExhausted {
                    reason: "STORAGE_FULL",
                    message: "disk".into(),
                },
                429,
                "TooManyRequestsException",
            ),
            (
                Error::PermissionDenied {
                    reason: "PERMISSION_DENIED",
                    message: "reader".into(),
                },
                403,
                "AccessDeniedException",
            ),
            (
                Error::Unavailable {
                    reason: "SHUTTING_DOWN",
                    message: "bye".into(),
                },
                503,
                "ServiceUnavailableException",
            ),
            (Error::internal("disk on fire"), 500, "InternalFailure"),
        ];
        for (e, status, code) in cases {
            let a = AwsError::from(e.clone());
            assert_eq!((a.status.as_u16(), a.code), (status, code), "{e:?}");
            assert_eq!(a.body()["message"], e.to_string());
        }
        let nf = AwsError::from(Error::NotFound {
            reason: "STAGE_NOT_FOUND",
            message: "x".into(),
        });
        assert_eq!(nf.body()["resourceType"], "Stage");
    }
}
