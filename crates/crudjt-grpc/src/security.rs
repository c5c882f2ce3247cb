//! Securing the master's TCP listener: TLS, and client credentials (a
//! client certificate, or a shared bearer secret in call metadata).
//!
//! The Unix socket is guarded by its file mode and peer credentials
//! instead (see [`PeerRule`](crate::PeerRule)); a bearer secret, when
//! configured, is required there too.

use std::fmt;

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The metadata key a bearer secret travels in.
const AUTHORIZATION: &str = "authorization";

/// Shortest bearer secret accepted: guessing one must be hopeless.
const MIN_SECRET_LEN: usize = 16;

/// A shared secret that clients present with every call, as
/// `authorization: Bearer <secret>`. Never printed: `Debug` shows only
/// that one is set.
#[derive(Clone)]
pub struct AuthToken {
    /// The whole header value, `Bearer <secret>`.
    header: MetadataValue<Ascii>,
}

/// Why a bearer secret was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthTokenError {
    /// Shorter than the minimum.
    #[error("the auth token is {0} characters; it must be at least 16")]
    TooShort(usize),
    /// Holds characters a gRPC header cannot carry.
    #[error("the auth token must be printable ASCII without spaces")]
    NotPrintable,
}

impl AuthToken {
    /// A secret from its text, such as a line of a file; surrounding
    /// whitespace is ignored.
    ///
    /// # Errors
    ///
    /// When it is shorter than 16 characters or not printable ASCII.
    pub fn new(secret: &str) -> Result<AuthToken, AuthTokenError> {
        let secret = secret.trim();
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthTokenError::NotPrintable);
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthTokenError::TooShort(secret.len()));
        }
        let header = format!("Bearer {secret}")
            .parse()
            .map_err(|_| AuthTokenError::NotPrintable)?;
        Ok(AuthToken { header })
    }

    /// Whether `presented` is this token's header, compared in constant
    /// time so that timing reveals nothing of the secret.
    fn admits(&self, presented: &[u8]) -> bool {
        self.header.as_bytes().ct_eq(presented).into()
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(..)")
    }
}

/// TLS for the master's TCP listener: its certificate chain and key, and
/// optionally a CA whose client certificates it requires (mutual TLS).
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
}

impl ServerTls {
    /// Serves with this certificate chain and private key, both PEM.
    pub fn new(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> ServerTls {
        ServerTls {
            cert_pem,
            key_pem,
            client_ca_pem: None,
        }
    }

    /// Requires every client to present a certificate signed by this CA
    /// (PEM).
    pub fn require_client_cert(mut self, ca_pem: Vec<u8>) -> ServerTls {
        self.client_ca_pem = Some(ca_pem);
        self
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    pub(crate) fn config(&self) -> ServerTlsConfig {
        let identity = Identity::from_pem(&self.cert_pem, &self.key_pem);
        let config = ServerTlsConfig::new().identity(identity);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("requires_client_cert", &self.requires_client_cert())
            .finish_non_exhaustive()
    }
}

/// How a client proves itself to a secured master, and checks the master.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Security {
    /// Connect with TLS, trusting this CA (PEM) for the master's
    /// certificate; plain TCP when `None`.
    pub tls_ca: Option<Vec<u8>>,
    /// The name the master's certificate must carry; the target's host
    /// when `None`.
    pub tls_domain: Option<String>,
    /// A client certificate chain and key (PEM), for masters that require
    /// one.
    pub tls_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// A bearer secret sent with every call.
    pub auth_token: Option<AuthToken>,
}

impl Security {
    /// No TLS and no credentials: a local master.
    pub fn none() -> Security {
        Security::default()
    }

    pub(crate) fn tls_config(&self) -> Option<ClientTlsConfig> {
        let ca = self.tls_ca.as_ref()?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(domain) = &self.tls_domain {
            config = config.domain_name(domain.clone());
        }
        if let Some((cert, key)) = &self.tls_identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Some(config)
    }
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls_ca.is_some())
            .field("tls_domain", &self.tls_domain)
            .field("client_cert", &self.tls_identity.is_some())
            .field("auth_token", &self.auth_token.is_some())
            .finish()
    }
}

/// Adds the bearer secret, if any, to each outgoing call.
#[derive(Clone)]
pub(crate) struct SendToken(pub(crate) Option<MetadataValue<Ascii>>);

impl SendToken {
    pub(crate) fn new(token: Option<&AuthToken>) -> SendToken {
        SendToken(token.map(|t| t.header.clone()))
    }
}

impl Interceptor for SendToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, header.clone());
        }
        Ok(request)
    }
}

/// Refuses calls without the bearer secret, when one is configured.
#[derive(Clone)]
pub(crate) struct RequireToken(pub(crate) Option<AuthToken>);

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.0 else {
            return Ok(request);
        };
        match request.metadata().get(AUTHORIZATION) {
            Some(presented) if token.admits(presented.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("the master refused the auth token")),
            None => Err(Status::unauthenticated(
                "this master requires an auth token (authorization: Bearer ...)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_never_printed() {
        assert_eq!(
            AuthToken::new("short").unwrap_err(),
            AuthTokenError::TooShort(5)
        );
        assert_eq!(
            AuthToken::new("has a space in it!!").unwrap_err(),
            AuthTokenError::NotPrintable
        );
        let token = AuthToken::new("  0123456789abcdef\n").unwrap();
        assert!(token.admits(b"Bearer 0123456789abcdef"));
        assert!(!token.admits(b"Bearer 0123456789abcdeX"));
        assert!(!token.admits(b"Bearer 0123456789abcde"));
        assert_eq!(format!("{token:?}"), "AuthToken(..)");
    }
}
