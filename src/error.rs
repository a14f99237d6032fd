//! The one error type of the library, and its single mapping to `tonic::Status`.
//!
//! Every error a client can see carries a stable `reason` (UPPER_SNAKE, sent as a
//! `google.rpc.ErrorInfo` with domain [`ERROR_DOMAIN`]) and a message that names the offending
//! field or record. Validation errors also carry the field, sent as a `google.rpc.BadRequest`
//! field violation.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every `google.rpc.ErrorInfo` mapreg sends.
pub const ERROR_DOMAIN: &str = "mapreg";

/// The most names an error message lists; the rest are counted ("and N more"), so a message
/// stays small enough for every gRPC client's header limits (SPEC.md 8.7).
pub const MAX_LISTED: usize = 10;

/// `names` for a message: at most [`MAX_LISTED`], comma-separated, then "and N more".
pub fn listed(names: &[String]) -> String {
    if names.len() <= MAX_LISTED {
        return names.join(", ");
    }
    format!(
        "{} and {} more",
        names[..MAX_LISTED].join(", "),
        names.len() - MAX_LISTED
    )
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in mapreg, by the gRPC code a client will see.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Bad input: `field` names the request field, `reason` is e.g. `INVALID_API_MAPPING_KEY`.
    #[error("{message}")]
    InvalidArgument {
        /// The request field at fault, as named in the proto (`api_mapping_key`).
        field: String,
        /// Stable machine-readable reason.
        reason: String,
        /// Human-readable explanation naming the field.
        message: String,
    },
    /// The record does not exist (or belongs to another account).
    #[error("{message}")]
    NotFound {
        /// Stable machine-readable reason, e.g. `STAGE_NOT_FOUND`.
        reason: &'static str,
        /// Human-readable explanation naming the record.
        message: String,
    },
    /// A record with this identity or unique key exists already.
    #[error("{message}")]
    AlreadyExists {
        /// Stable machine-readable reason, e.g. `MAPPING_KEY_CONFLICT`.
        reason: &'static str,
        /// Human-readable explanation naming the record.
        message: String,
    },
    /// The write would break a rule about the state of other records.
    #[error("{message}")]
    FailedPrecondition {
        /// Stable machine-readable reason, e.g. `PROTOCOL_CONFLICT`.
        reason: &'static str,
        /// Human-readable explanation naming the conflicting record.
        message: String,
    },
    /// A delete refused because mappings still use the record (rule 8). The message names at
    /// most [`MAX_LISTED`] domain names; `domain_count` (ErrorInfo metadata) is how many there are.
    #[error("{message}")]
    InUse {
        /// `API_IN_USE` or `STAGE_IN_USE`.
        reason: &'static str,
        /// Human-readable explanation naming the record and (some of) the domains.
        message: String,
        /// Every domain name with a mapping to the record.
        domain_count: usize,
    },
    /// `expected_revision` did not match the record's `mod_revision`.
    #[error("{message}")]
    Aborted {
        /// Stable machine-readable reason (`REVISION_MISMATCH`).
        reason: &'static str,
        /// Human-readable explanation with both revisions.
        message: String,
    },
    /// A quota would be exceeded.
    #[error("{message}")]
    ResourceExhausted {
        /// Stable machine-readable reason, e.g. `MULTI_LEVEL_MAPPING_LIMIT`.
        reason: &'static str,
        /// Human-readable explanation naming the limit.
        message: String,
    },
    /// A watch asked for history the store no longer has, or another store's history.
    #[error("{message}")]
    OutOfRange {
        /// `REVISION_COMPACTED` or `STORE_CHANGED`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
        /// ErrorInfo metadata, e.g. `compact_revision`.
        metadata: Vec<(String, String)>,
    },
    /// No credentials, or credentials that match no configured token.
    #[error("{message}")]
    Unauthenticated {
        /// `TOKEN_MISSING` or `TOKEN_UNKNOWN`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The caller's role may not do this.
    #[error("{message}")]
    PermissionDenied {
        /// `PERMISSION_DENIED`.
        reason: &'static str,
        /// Human-readable explanation naming the role and the action.
        message: String,
    },
    /// The server is shutting down or cannot serve now; clients should retry elsewhere or later.
    #[error("{message}")]
    Unavailable {
        /// Stable machine-readable reason, e.g. `SHUTTING_DOWN`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The RPC is declared but not served by this version.
    #[error("{message}")]
    Unimplemented {
        /// Human-readable explanation.
        message: String,
    },
    /// The disk holding the data dir is full (ENOSPC) or over its quota (EDQUOT): the write
    /// was not acknowledged. Writes work again by themselves once space is freed; reads and
    /// watches keep answering meanwhile (SPEC.md 8.7).
    #[error(
        "the disk holding the data dir is full ({0}); the write was not acknowledged. Writes \
         resume by themselves once space is freed on it"
    )]
    StorageFull(String),
    /// What the store's writer node answered a write this node forwarded to it: passed on as
    /// it came (code, message, and the details: ErrorInfo, BadRequest).
    #[error("{message}")]
    Forwarded {
        /// The writer node's gRPC code.
        code: Code,
        /// Its ErrorInfo reason.
        reason: String,
        /// Its message.
        message: String,
        /// Its encoded `google.rpc.Status` details.
        details: Vec<u8>,
    },
    /// Storage failed. Nothing of the request was applied.
    #[error("internal error: {0}")]
    Internal(String),
    /// The data on disk is not a store mapreg wrote (torn, truncated, rolled back, tampered):
    /// refused rather than served wrong. `serve` and `check` exit 2 with it.
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
}

impl Error {
    /// A validation error on `field`; the reason is `INVALID_<FIELD>`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.to_string(),
            // A nested field (`domain_name_configurations.endpoint_type`) keeps its path in
            // BadRequest; the reason names the leaf, so it stays UPPER_SNAKE.
            reason: format!(
                "INVALID_{}",
                field
                    .rsplit('.')
                    .next()
                    .unwrap_or(field)
                    .split('[')
                    .next()
                    .unwrap_or(field)
                    .to_ascii_uppercase()
            ),
            message: message.into(),
        }
    }

    /// A storage or encoding fault.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        Error::Internal(what.to_string())
    }

    /// The gRPC code this error is sent with.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::FailedPrecondition { .. } | Error::InUse { .. } => Code::FailedPrecondition,
            Error::Aborted { .. } => Code::Aborted,
            Error::ResourceExhausted { .. } | Error::StorageFull(_) => Code::ResourceExhausted,
            Error::OutOfRange { .. } => Code::OutOfRange,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::Unavailable { .. } => Code::Unavailable,
            Error::Unimplemented { .. } => Code::Unimplemented,
            Error::Internal(_) | Error::Corrupt(_) => Code::Internal,
            Error::Forwarded { code, .. } => *code,
        }
    }

    /// The stable `ErrorInfo` reason.
    pub fn reason(&self) -> &str {
        match self {
            Error::InvalidArgument { reason, .. } => reason,
            Error::NotFound { reason, .. }
            | Error::AlreadyExists { reason, .. }
            | Error::FailedPrecondition { reason, .. }
            | Error::InUse { reason, .. }
            | Error::Aborted { reason, .. }
            | Error::ResourceExhausted { reason, .. }
            | Error::OutOfRange { reason, .. }
            | Error::Unauthenticated { reason, .. }
            | Error::PermissionDenied { reason, .. }
            | Error::Unavailable { reason, .. } => reason,
            Error::Unimplemented { .. } => "UNIMPLEMENTED",
            Error::StorageFull(_) => "STORAGE_FULL",
            Error::Internal(_) => "INTERNAL",
            Error::Corrupt(_) => "DATA_CORRUPT",
            Error::Forwarded { reason, .. } => reason,
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => Error::Corrupt(format!("storage: {e}")),
            sled::Error::Io(io) if is_storage_full(&io) => Error::StorageFull(io.to_string()),
            e => Error::Internal(format!("storage: {e}")),
        }
    }
}

/// ENOSPC or EDQUOT. sled hands on its sticky I/O error as a copy that keeps only the kind
/// and the text, so both are looked at, not just the OS error number.
pub fn is_storage_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || e.to_string().contains("No space left on device")
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Corrupt(format!("undecodable record: {e}"))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        if let Error::Forwarded {
            code,
            message,
            details,
            ..
        } = e
        {
            return Status::with_details(code, message, details.into());
        }
        let code = e.code();
        let message = e.to_string();
        let metadata: HashMap<String, String> = match &e {
            Error::OutOfRange { metadata, .. } => metadata.iter().cloned().collect(),
            Error::InUse { domain_count, .. } => {
                HashMap::from([("domain_count".to_string(), domain_count.to_string())])
            }
            _ => HashMap::new(),
        };
        let mut details = ErrorDetails::with_error_info(e.reason(), ERROR_DOMAIN, metadata);
        if let Error::InvalidArgument { field, message, .. } = &e
            && !field.is_empty()
        {
            details.add_bad_request_violation(field.clone(), message.clone());
        }
        Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_error_info_and_field_violation() {
        let status: Status = Error::invalid("api_mapping_key", "bad key").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "INVALID_API_MAPPING_KEY");
        assert_eq!(info.domain, ERROR_DOMAIN);
        let bad = details.bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "api_mapping_key");
    }

    #[test]
    fn long_lists_are_cut_and_counted() {
        let names: Vec<String> = (0..12).map(|i| format!("d{i}.com")).collect();
        assert_eq!(listed(&names[..2]), "d0.com, d1.com");
        let m = listed(&names);
        assert!(m.ends_with("d9.com and 2 more"), "{m}");
        assert!(!m.contains("d10.com"));
        let status: Status = Error::InUse {
            reason: "API_IN_USE",
            message: m,
            domain_count: 12,
        }
        .into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "API_IN_USE");
        assert_eq!(
            info.metadata.get("domain_count").map(String::as_str),
            Some("12")
        );
    }

    #[test]
    fn a_full_disk_is_storage_full_whatever_sled_made_of_the_error() {
        for io in [
            std::io::Error::from_raw_os_error(libc::ENOSPC),
            std::io::Error::from_raw_os_error(libc::EDQUOT),
            // sled's copy of its sticky error: the kind and the Debug text only.
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "Os { code: 28, kind: StorageFull }",
            ),
        ] {
            let e = Error::from(sled::Error::Io(io));
            assert_eq!(e.reason(), "STORAGE_FULL", "{e}");
            let status: Status = e.into();
            assert_eq!(status.code(), Code::ResourceExhausted);
            assert!(status.message().contains("resume"), "{}", status.message());
            let info = status.get_details_error_info().expect("error info");
            assert_eq!(info.reason, "STORAGE_FULL");
        }
        let other = Error::from(sled::Error::Io(std::io::Error::from_raw_os_error(
            libc::EIO,
        )));
        assert_eq!(other.reason(), "INTERNAL");
    }

    #[test]
    fn out_of_range_carries_metadata() {
        let status: Status = Error::OutOfRange {
            reason: "REVISION_COMPACTED",
            message: "compacted".into(),
            metadata: vec![("compact_revision".into(), "42".into())],
        }
        .into();
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(
            info.metadata.get("compact_revision").map(String::as_str),
            Some("42")
        );
    }
}
