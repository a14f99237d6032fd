//! Client-side failures, printed and numbered as the AWS CLI does, so scripts written for
//! `aws apigatewayv2` branch on the same exit codes and exception names.

use tonic::Code;

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
    /// A flag's value that clap could not check (an endpoint URL, a token).
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

impl CliError {
    /// The service error of `operation`.
    pub fn service(operation: &'static str, status: tonic::Status) -> CliError {
        CliError::Service { operation, status }
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Service { .. } => EXIT_SERVICE,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Interrupted => EXIT_INTERRUPTED,
            CliError::Connect { .. } | CliError::Output(_) => EXIT_OTHER,
        }
    }

    /// Whether the failure is the reader of our output going away (`mapreg watch | head`):
    /// nothing to report then.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
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

/// An error and its sources, joined by ": " (tonic's transport errors hide the useful part in
/// their sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
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
