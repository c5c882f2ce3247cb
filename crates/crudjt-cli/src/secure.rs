//! Reading TLS material and auth tokens named on the command line.

use std::path::Path;

use anyhow::Context;
use crudjt_grpc::AuthToken;

use crate::exit::Invalid;

/// Environment variable holding an auth token, for `serve` and the clients,
/// when no `--auth-token-file` is given.
pub const AUTH_TOKEN_ENV: &str = "CRUDJT_AUTH_TOKEN";

/// The PEM file at `path`, named in the error when it cannot be read.
pub fn pem(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))
}

/// The auth token from `file`, else from [`AUTH_TOKEN_ENV`]; `None` when
/// neither is set. The token itself never appears in an error.
pub fn auth_token(file: Option<&Path>) -> anyhow::Result<Option<AuthToken>> {
    let (text, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --auth-token-file {}", path.display()))?;
            (text, format!("--auth-token-file {}", path.display()))
        }
        None => match std::env::var(AUTH_TOKEN_ENV) {
            Ok(text) => (text, AUTH_TOKEN_ENV.to_owned()),
            Err(_) => return Ok(None),
        },
    };
    AuthToken::new(&text)
        .map(Some)
        .map_err(|err| Invalid(format!("{origin}: {err}")).into())
}
