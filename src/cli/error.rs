//! Client-side failures, printed and numbered as the AWS CLI does, so scripts written for
//! `aws apigatewayv2` branch on the same exit codes and exception names.

use tonic::Code;

pub use crate::client::connect::error_chain;

/// Exit code of a bad command line (unknown flag, missing or malformed value), as the AWS CLI's.
pub const EXIT_USAGE: u8 = 252;
/// Exit code of an error answered by the service, as the AWS CLI's.
pub const EXIT_SERVICE: u8 = 254;
/// Exit code of any other failure (cannot connect, cannot write the output), as the AWS CLI's.
pub const EXIT_OTHER: u8 = 255;
/// Exit code when interrupted by Ctrl-C, as the AWS CLI's (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error status.
    #[error(
        "An error occurred ({}) when calling the {operation} operation: {}",
        exception_name(status.code()),
        service_message(status)
    )]
    Service {
        /// The RPC, as AWS names operations (`CreateApiMapping`).
        operation: &'static str,
        /// The status the server answered.
        status: tonic::Status,
    },
    /// No connection to the server could be made.
    #[error("Could not connect to the endpoint URL: \"{endpoint}\" ({reason})")]
    Connect {
        /// The endpoint as used.
        endpoint: String,
        /// The transport's explanation.
        reason: String,
    },
    /// The server's answer could not be read by this client (e.g. larger than
    /// `MAPREG_MAX_RESPONSE_BYTES`): a client-side failure, not the service's error.
    #[error("Could not read the response of the {operation} operation: {reason}")]
    Decode {
        /// The RPC, as AWS names operations.
        operation: &'static str,
        /// What failed, and what to do about it.
        reason: String,
    },
    /// A flag's value that clap could not check (an endpoint URL, a token, --query, a file).
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// Every endpoint of `--endpoint-url a,b,c` was tried, in order, and each failed in a way
    /// that let the request move on to the next ([`crate::client::failover`]).
    #[error("{}", endpoints_text(attempts))]
    Endpoints {
        /// Each endpoint tried (its URL) and how it failed, in the order tried.
        attempts: Vec<(String, CliError)>,
    },
}

/// The message of [`CliError::Endpoints`]: one line per endpoint, naming it.
fn endpoints_text(attempts: &[(String, CliError)]) -> String {
    let mut text = format!(
        "Could not complete the request with any of the {} endpoints (tried in this order):",
        attempts.len()
    );
    for (url, e) in attempts {
        let why = match e {
            CliError::Connect { reason, .. } => format!("could not connect ({reason})"),
            e => e.to_string(),
        };
        text.push_str(&format!("\n  {url}: {why}"));
    }
    text
}

impl CliError {
    /// The service error of `operation`.
    pub fn service(operation: &'static str, status: tonic::Status) -> CliError {
        CliError::Service { operation, status }
    }

    /// The failure of a request after `attempts` (endpoint, error), in the order tried: the
    /// error itself when there was one attempt, else [`CliError::Endpoints`] naming each.
    pub fn endpoints(mut attempts: Vec<(String, CliError)>) -> CliError {
        if attempts.len() == 1 {
            if let Some((_, e)) = attempts.pop() {
                return e;
            }
        }
        if attempts.is_empty() {
            return CliError::Usage("no endpoint to send the request to".into());
        }
        CliError::Endpoints { attempts }
    }

    /// The process exit code for this failure (for [`CliError::Endpoints`], the last
    /// endpoint's).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Endpoints { attempts } => {
                attempts.last().map_or(EXIT_OTHER, |(_, e)| e.exit_code())
            }
            CliError::Service { .. } => EXIT_SERVICE,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Interrupted => EXIT_INTERRUPTED,
            CliError::Connect { .. } | CliError::Decode { .. } | CliError::Output(_) => EXIT_OTHER,
        }
    }

    /// Whether the failure is the reader of our output going away (`mapreg watch | head`):
    /// nothing to report then.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Rewrites a failed call's error in the terms of the command line the user typed:
///
/// - a status tonic made up on this side (no server metadata, no details), such as a response
///   larger than the client decodes, becomes [`CliError::Decode`] (exit 255), not a
///   `BadRequestException`;
/// - the request fields a `BadRequest` names become the flags that set them (`next_token` ->
///   `--starting-token`, `api_mapping_key` -> `--api-mapping-key`) in the message;
/// - a refused or missing token says how the CLI sends one (`--token` / `MAPREG_TOKEN`).
pub fn explain(e: CliError, token_set: bool) -> CliError {
    let CliError::Service { operation, status } = e else {
        return e;
    };
    if is_client_side(&status) {
        let hint = if status.code() == Code::OutOfRange {
            "; the response is larger than this client accepts (MAPREG_MAX_RESPONSE_BYTES): ask \
             for smaller pages with --max-results"
        } else {
            ""
        };
        return CliError::Decode {
            operation,
            reason: format!("{}{hint}", service_message(&status)),
        };
    }
    let mut message = service_message(&status);
    for field in violated_fields(&status) {
        let top = field.split(['.', '[']).next().unwrap_or(&field).to_string();
        let flag = flag_of(&top);
        message = replace_word(&message, &field, &flag);
        message = replace_word(&message, &top, &flag);
    }
    match status.code() {
        Code::Unauthenticated if token_set => message.push_str(
            " (mapreg sent the token of --token or MAPREG_TOKEN, and the server did not accept it)",
        ),
        Code::Unauthenticated => {
            message.push_str(" (mapreg sent no token: pass --token TOKEN or set MAPREG_TOKEN)")
        }
        Code::PermissionDenied if token_set => {
            message.push_str(" (the token of --token or MAPREG_TOKEN does not allow this)")
        }
        _ => {}
    }
    if message == status.message() {
        return CliError::Service { operation, status };
    }
    let status = tonic::Status::with_details_and_metadata(
        status.code(),
        message,
        status.details().to_vec().into(),
        status.metadata().clone(),
    );
    CliError::Service { operation, status }
}

/// Whether tonic made `status` up on this side while reading the answer: mapreg's server sends
/// every error with an ErrorInfo in its details, and tonic's own decode failures carry none
/// (a message over the decode limit is `OUT_OF_RANGE`; an undecodable one `INTERNAL`, "failed to
/// decode" or "protocol error"). The metadata does not tell: tonic attaches the response's
/// headers to a failure it makes up after them.
fn is_client_side(status: &tonic::Status) -> bool {
    if !status.details().is_empty() {
        return false;
    }
    match status.code() {
        Code::OutOfRange => true,
        Code::Internal => {
            let m = status.message();
            m.starts_with("failed to decode") || m.starts_with("protocol error")
        }
        _ => false,
    }
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The flag that sets the request field `field`.
pub fn flag_of(field: &str) -> String {
    match field {
        "next_token" => "--starting-token".to_string(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// `text` with each whole-word `word` (not part of a longer identifier or flag) replaced.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    if word.is_empty() {
        return text.to_string();
    }
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(word) {
        out.push_str(&rest[..i]);
        let before = out.chars().last();
        let after = rest[i + word.len()..].chars().next();
        if before.is_some_and(ident) || after.is_some_and(|c| ident(c) && c != '-') {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[i + word.len()..];
    }
    out.push_str(rest);
    out
}

/// The AWS exception name a gRPC code stands for.
pub fn exception_name(code: Code) -> &'static str {
    match code {
        Code::NotFound => "NotFoundException",
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => "ConflictException",
        Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted => "BadRequestException",
        Code::PermissionDenied => "AccessDeniedException",
        Code::Unauthenticated => "UnauthorizedException",
        Code::Unavailable => "ServiceUnavailableException",
        _ => "InternalServerErrorException",
    }
}

/// The status message, or the code's description when the server sent none.
fn service_message(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        status.code().description().to_string()
    } else {
        status.message().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_exception_names() {
        assert_eq!(exception_name(Code::NotFound), "NotFoundException");
        for c in [Code::AlreadyExists, Code::FailedPrecondition, Code::Aborted] {
            assert_eq!(exception_name(c), "ConflictException");
        }
        for c in [
            Code::InvalidArgument,
            Code::OutOfRange,
            Code::ResourceExhausted,
        ] {
            assert_eq!(exception_name(c), "BadRequestException");
        }
        assert_eq!(
            exception_name(Code::PermissionDenied),
            "AccessDeniedException"
        );
        assert_eq!(
            exception_name(Code::Unauthenticated),
            "UnauthorizedException"
        );
        assert_eq!(
            exception_name(Code::Unavailable),
            "ServiceUnavailableException"
        );
        for c in [Code::Internal, Code::Unknown, Code::DeadlineExceeded] {
            assert_eq!(exception_name(c), "InternalServerErrorException");
        }
    }

    #[test]
    fn fields_become_flags() {
        assert_eq!(flag_of("next_token"), "--starting-token");
        assert_eq!(flag_of("max_results"), "--max-results");
        assert_eq!(flag_of("api_mapping_key"), "--api-mapping-key");
        assert_eq!(
            replace_word(
                "next_token is malformed; pass the next_token unchanged",
                "next_token",
                "--starting-token"
            ),
            "--starting-token is malformed; pass the --starting-token unchanged"
        );
        assert_eq!(
            replace_word("my_next_token x", "next_token", "--t"),
            "my_next_token x"
        );
        assert_eq!(
            replace_word("api_id: bad", "api_id", "--api-id"),
            "--api-id: bad"
        );
    }

    #[test]
    fn client_side_decode_failure_is_not_a_service_error() {
        let local = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 5000 bytes, the limit is: 100 bytes",
        );
        let e = explain(CliError::service("GetApis", local), false);
        assert!(matches!(e, CliError::Decode { .. }), "{e:?}");
        assert_eq!(e.exit_code(), EXIT_OTHER);
        assert!(e.to_string().contains("--max-results"), "{e}");
        let remote =
            tonic::Status::with_details(Code::OutOfRange, "too big", vec![1u8, 2, 3].into());
        let e = explain(CliError::service("GetApis", remote), false);
        assert!(matches!(e, CliError::Service { .. }), "{e:?}");
    }

    #[test]
    fn token_hints() {
        let e = explain(
            CliError::service("GetApis", tonic::Status::unauthenticated("no token")),
            false,
        );
        assert!(e.to_string().contains("--token"), "{e}");
        assert!(e.to_string().contains("MAPREG_TOKEN"), "{e}");
        let e = explain(
            CliError::service("GetApis", tonic::Status::unauthenticated("unknown token")),
            true,
        );
        assert!(e.to_string().contains("did not accept"), "{e}");
    }

    #[test]
    fn every_endpoint_is_named() {
        let refused = |url: &str| {
            (
                url.to_string(),
                CliError::Connect {
                    endpoint: url.to_string(),
                    reason: "connection refused".into(),
                },
            )
        };
        let one = CliError::endpoints(vec![refused("http://a:1")]);
        assert!(matches!(one, CliError::Connect { .. }), "{one:?}");
        let e = CliError::endpoints(vec![
            refused("http://a:1"),
            (
                "http://b:2".into(),
                CliError::service("GetApi", tonic::Status::unavailable("shutting down")),
            ),
        ]);
        let text = e.to_string();
        assert!(text.contains("any of the 2 endpoints"), "{text}");
        assert!(text.contains("http://a:1: could not connect (connection refused)"));
        assert!(text.contains("http://b:2: An error occurred (ServiceUnavailableException)"));
        assert_eq!(e.exit_code(), EXIT_SERVICE, "the last endpoint's");
    }

    #[test]
    fn service_error_text_and_exit_code() {
        let e = CliError::service(
            "CreateApiMapping",
            tonic::Status::already_exists("ApiMapping key already exists for this domain name"),
        );
        assert_eq!(
            e.to_string(),
            "An error occurred (ConflictException) when calling the CreateApiMapping operation: \
             ApiMapping key already exists for this domain name"
        );
        assert_eq!(e.exit_code(), EXIT_SERVICE);
        let e = CliError::service("GetApi", tonic::Status::new(Code::Internal, ""));
        assert!(e.to_string().ends_with("operation: Internal error"), "{e}");
    }
}
