//! Exit statuses that scripts can rely on, and which failure gets which.

use std::fmt;

use crudjt::OpenError;
use crudjt_grpc::ClientError;

/// The token is missing, expired or used up; for `serve` and `keygen`, any
/// failure that is not bad input.
pub const NOT_FOUND: u8 = 1;
/// See [`NOT_FOUND`]: the local commands have no "not found".
pub const FAILED: u8 = 1;
/// Bad arguments, refused here or by the master. Clap's own usage errors
/// also exit with 2, so every kind of bad input shares one status.
pub const INVALID: u8 = 2;
/// Nothing answered at the master's address, or the master holds its
/// limit of connections: either way, a later try may succeed.
pub const UNREACHABLE: u8 = 3;
/// The master answered but failed the call.
pub const MASTER_FAILED: u8 = 4;

/// The exit statuses of the client commands, for their `--help`.
pub const CLIENT_HELP: &str = "\
Exit status:
  0  success
  1  not found: the token is missing, expired or used up
     (read prints null, update and delete print false)
  2  invalid arguments: bad JSON, data that is not an object or is too large,
     a limit of 0, or anything else the master refuses as INVALID_ARGUMENT
  3  cannot reach the master, or it holds its limit of connections
  4  the master failed the call";

/// Input this program refuses before any store or master sees it.
#[derive(Debug)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// Who is failing: a client command can blame the master or the link to
/// it, while `serve` and `keygen` only tell bad input from the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `create`, `read`, `update`, `delete`, `stats` and `bench`.
    Client,
    /// `serve` and `keygen`.
    Local,
}

/// The exit status for a failed command, from the first cause in its chain
/// that says what kind of failure it is.
pub fn status_of(err: &anyhow::Error, family: Family) -> u8 {
    for cause in err.chain() {
        if cause.is::<Invalid>() || cause.is::<crudjt::KeyError>() {
            return INVALID;
        }
        if let Some(err) = cause.downcast_ref::<crudjt::Error>()
            && err.is_invalid_argument()
        {
            return INVALID;
        }
        if let Some(err) = cause.downcast_ref::<ClientError>() {
            return match err {
                ClientError::InvalidArgument(_) => INVALID,
                ClientError::NotConnected { .. } | ClientError::Busy { .. } => UNREACHABLE,
                _ => MASTER_FAILED,
            };
        }
        if let Some(OpenError::InvalidKey(_) | OpenError::InvalidOption { .. }) =
            cause.downcast_ref::<OpenError>()
        {
            return INVALID;
        }
    }
    match family {
        Family::Client => MASTER_FAILED,
        Family::Local => FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_map_to_their_statuses() {
        let unreachable = ClientError::NotConnected {
            target: "127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        let status = |err: anyhow::Error| status_of(&err, Family::Client);
        assert_eq!(status(unreachable.into()), UNREACHABLE);
        let busy = ClientError::Busy {
            target: "127.0.0.1:1".into(),
            message: "the master holds its limit of 2 connections".into(),
        };
        assert_eq!(status(busy.into()), UNREACHABLE);
        assert_eq!(
            status(ClientError::InvalidArgument("no".into()).into()),
            INVALID
        );
        assert_eq!(status(ClientError::BadReply("odd").into()), MASTER_FAILED);
        let wrapped = anyhow::Error::new(Invalid("bad json".into())).context("while reading");
        assert_eq!(status(wrapped), INVALID);
    }

    #[test]
    fn local_failures_tell_bad_input_from_the_rest() {
        let key = anyhow::Error::new(OpenError::InvalidKey(crudjt::KeyError::NotBase64));
        assert_eq!(status_of(&key, Family::Local), INVALID);
        let other = anyhow::anyhow!("address in use");
        assert_eq!(status_of(&other, Family::Local), FAILED);
    }
}
