//! The one place store errors become gRPC statuses.

use tonic::{Code, Status};

/// Maps a store error to the status a client sees. The caller's mistakes
/// are `INVALID_ARGUMENT` with the store's own message; a damaged record is
/// `INTERNAL`; a failing or closing disk is `UNAVAILABLE`, which clients may
/// retry.
pub(crate) fn to_status(rpc: &'static str, err: crudjt::Error) -> Status {
    if err.is_invalid_argument() {
        tracing::debug!(rpc, error = %err, "refused a request");
        return Status::invalid_argument(err.to_string());
    }
    let code = match err {
        crudjt::Error::Storage(_) | crudjt::Error::Closed => Code::Unavailable,
        _ => Code::Internal,
    };
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    tracing::error!(rpc, error = %err, cause, "request failed");
    let message = match cause {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    };
    Status::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_arguments_keep_the_store_message() {
        let status = to_status(
            "CreateToken",
            crudjt::Error::DataTooLarge {
                size: 300,
                limit: 256,
            },
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "token data is 300 bytes, the limit is 256"
        );
        assert_eq!(
            to_status("ReadToken", crudjt::Error::EmptyToken).code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn store_failures_are_internal_or_unavailable() {
        assert_eq!(
            to_status("ReadToken", crudjt::Error::Corrupt { id: 3 }).code(),
            Code::Internal
        );
        assert_eq!(
            to_status("ReadToken", crudjt::Error::Closed).code(),
            Code::Unavailable
        );
    }
}
