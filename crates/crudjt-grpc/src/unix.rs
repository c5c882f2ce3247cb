//! The master's Unix socket: bound with a chosen mode, and accepting only
//! the peers an operator allows, by the credentials the kernel reports.

use std::io;
use std::path::Path;

use tokio::net::{UnixListener, UnixStream};
use tokio_stream::{Stream, StreamExt};

/// Which local users may use the Unix socket, checked against each
/// connection's peer credentials (`SO_PEERCRED`): a peer is let in when
/// its user id is in `uids` or its group id is in `gids`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerRule {
    /// Allowed user ids.
    pub uids: Vec<u32>,
    /// Allowed group ids (the peer's primary group).
    pub gids: Vec<u32>,
}

impl PeerRule {
    fn allows(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// The accepted connections that `rule` lets in; the rest are closed at
/// once and logged with who tried.
pub(crate) fn admitted(
    incoming: impl Stream<Item = io::Result<UnixStream>>,
    rule: Option<PeerRule>,
) -> impl Stream<Item = io::Result<UnixStream>> {
    incoming.filter(move |accepted| {
        let (Some(rule), Ok(stream)) = (&rule, accepted) else {
            return true;
        };
        match stream.peer_cred() {
            Ok(cred) if rule.allows(cred.uid(), cred.gid()) => true,
            Ok(cred) => {
                tracing::warn!(
                    uid = cred.uid(),
                    gid = cred.gid(),
                    pid = cred.pid(),
                    "refused a unix socket peer that is not allowed"
                );
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "refused a unix socket peer with unknown credentials");
                false
            }
        }
    })
}

/// Binds a Unix socket that no one can connect to before it has its
/// `mode`: it is bound inside a fresh owner-only directory, given the mode,
/// and only then renamed to `path`.
pub(crate) fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    let context = |what: &str, err: io::Error| {
        io::Error::new(
            err.kind(),
            format!("cannot {what} unix socket {}: {err}", path.display()),
        )
    };
    if path.exists() {
        // A live socket belongs to another server; a dead one is left over
        // from a crash and can go.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            let err = io::Error::new(io::ErrorKind::AddrInUse, "another server is listening");
            return Err(context("use", err));
        }
        std::fs::remove_file(path).map_err(|e| context("replace stale", e))?;
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = parent.join(format!(".crudjt-socket-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| context("stage", e))?;
    let staged = staging.join("socket");
    let bound = UnixListener::bind(&staged)
        .and_then(|listener| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&staged, path)?;
            Ok(listener)
        })
        .map_err(|e| context("bind", e));
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&staging);
    bound
}
