//! TLS, client certificates and auth tokens, through the real
//! `crudjt serve` and the Rust client. Certificates are made for each run
//! with the `openssl` command.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use crudjt::Limits;
use crudjt_grpc::{AuthToken, Client, ClientError, Code, Security, Target};

/// `{"a": 1}` as MessagePack.
const DATA: &[u8] = &[0x81, 0xa1, b'a', 0x01];
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA and a certificate it signs for `name`, with `usage` as extended
/// key usage, as PEM files in `dir`.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path, ca: &str) -> Pki {
        let pki = Pki { dir: dir.join(ca) };
        std::fs::create_dir_all(&pki.dir).unwrap();
        let (key, cert) = (pki.path("ca.key"), pki.path("ca.pem"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &key,
            "-out",
            &cert,
        ]);
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    fn issue(&self, name: &str, usage: &str) {
        let (key, csr, cert) = (
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.csr")),
            self.path(&format!("{name}.pem")),
        );
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n\
                 subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            ),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.path("ca.pem"),
            "-CAkey",
            &self.path("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

fn tcp(master: &common::Master) -> Target {
    Target::Tcp {
        host: "localhost".into(),
        port: master.port.unwrap(),
    }
}

fn trusting(pki: &Pki) -> Security {
    let mut security = Security::none();
    security.tls_ca = Some(pki.read("ca.pem"));
    security
}

/// Whether a create and read through `security` work.
async fn round_trip(target: Target, security: &Security) -> Result<(), ClientError> {
    let client = Client::connect_with(target, security).await?;
    let token = client.create(DATA, Limits::NONE).await?;
    assert_eq!(client.read(&token).await?.unwrap().data, DATA);
    Ok(())
}

fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> common::Master {
    let mut all_env = vec![("CRUDJT_SECRET_KEY", common::KEY)];
    all_env.extend_from_slice(env);
    common::Master::start(&dir.join("store"), args, &all_env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_its_ca_and_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "crudjt-test-ca");
    pki.issue("server", "serverAuth");
    let rogue = Pki::new(dir.path(), "rogue-ca");
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let master = serve(dir.path(), &["--tls-cert", &cert, "--tls-key", &key], &[]);

    round_trip(tcp(&master), &trusting(&pki)).await.unwrap();

    let plain = round_trip(tcp(&master), &Security::none())
        .await
        .unwrap_err();
    assert!(
        matches!(plain, ClientError::NotConnected { .. }),
        "{plain:?}"
    );
    let untrusted = round_trip(tcp(&master), &trusting(&rogue))
        .await
        .unwrap_err();
    assert!(
        matches!(untrusted, ClientError::NotConnected { .. }),
        "{untrusted:?}"
    );
    assert!(untrusted.to_string().contains("certificate"), "{untrusted}");
    master.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_the_connection_limit_is_told_why_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "crudjt-test-ca");
    pki.issue("server", "serverAuth");
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let args = [
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--max-connections",
        "1",
    ];
    let master = serve(dir.path(), &args, &[]);
    let security = trusting(&pki);

    let held = Client::connect_with(tcp(&master), &security).await.unwrap();
    let token = held.create(DATA, Limits::NONE).await.unwrap();
    let refused = round_trip(tcp(&master), &security).await.unwrap_err();
    assert!(matches!(refused, ClientError::Busy { .. }), "{refused:?}");
    assert!(
        refused.to_string().contains("limit of 1 connection"),
        "{refused}"
    );
    assert!(held.read(&token).await.unwrap().is_some());
    master.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_the_right_ca_is_required_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "crudjt-test-ca");
    pki.issue("server", "serverAuth");
    pki.issue("client", "clientAuth");
    let rogue = Pki::new(dir.path(), "rogue-ca");
    rogue.issue("client", "clientAuth");
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let args = [
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ];
    let master = serve(dir.path(), &args, &[]);

    let mut with_cert = trusting(&pki);
    with_cert.tls_identity = Some((pki.read("client.pem"), pki.read("client.key")));
    round_trip(tcp(&master), &with_cert).await.unwrap();

    assert!(round_trip(tcp(&master), &trusting(&pki)).await.is_err());
    let mut rogue_cert = trusting(&pki);
    rogue_cert.tls_identity = Some((rogue.read("client.pem"), rogue.read("client.key")));
    assert!(round_trip(tcp(&master), &rogue_cert).await.is_err());
    master.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_token_is_required_on_every_listener() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("crudjt.sock");
    let args = ["--unix-socket", socket.to_str().unwrap()];
    let master = serve(dir.path(), &args, &[("CRUDJT_AUTH_TOKEN", TOKEN)]);
    let local = Target::Tcp {
        host: "127.0.0.1".into(),
        port: master.port.unwrap(),
    };

    for target in [local, Target::Unix(socket.clone())] {
        let mut right = Security::none();
        right.auth_token = Some(AuthToken::new(TOKEN).unwrap());
        round_trip(target.clone(), &right).await.unwrap();

        let missing = round_trip(target.clone(), &Security::none())
            .await
            .unwrap_err();
        let ClientError::Server { code, message } = missing else {
            panic!("expected a refusal, got {missing:?}");
        };
        assert_eq!(code, Code::Unauthenticated);
        assert!(message.contains("requires an auth token"), "{message}");

        let mut wrong = Security::none();
        wrong.auth_token = Some(AuthToken::new("fedcba9876543210fedcba9876543210").unwrap());
        let refused = round_trip(target, &wrong).await.unwrap_err();
        assert!(
            matches!(
                refused,
                ClientError::Server {
                    code: Code::Unauthenticated,
                    ..
                }
            ),
            "{refused:?}"
        );
    }

    // The command-line client reads the token from a file; the token
    // never shows in the master's logs.
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let made = master.client(&[
        "create",
        r#"{"a": 1}"#,
        "--auth-token-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(made.code(), 0, "{made:?}");
    let denied = master.client(&["create", r#"{"a": 1}"#]);
    assert_eq!(denied.code(), 4, "{denied:?}");
    assert!(master.logs().iter().all(|line| !line.contains(TOKEN)));
    master.stop();
}

#[test]
fn a_network_address_needs_tls_and_client_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "crudjt-test-ca");
    pki.issue("server", "serverAuth");
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let env = [("CRUDJT_SECRET_KEY", common::KEY)];

    let base = [
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--store-path",
        store,
    ];
    let tls_only = [&base[..], &["--tls-cert", &cert, "--tls-key", &key]].concat();
    let refused = common::run_with(&tls_only, &env);
    assert_eq!(refused.code(), 2, "{refused:?}");
    assert!(
        refused.stderr.contains("without client authentication"),
        "{refused:?}"
    );

    let token_only = common::run_with(&base, &[env[0], ("CRUDJT_AUTH_TOKEN", TOKEN)]);
    assert_eq!(token_only.code(), 2, "{token_only:?}");
    assert!(token_only.stderr.contains("without TLS"), "{token_only:?}");

    let args = ["--host", "0.0.0.0", "--tls-cert", &cert, "--tls-key", &key];
    let master = serve(dir.path(), &args, &[("CRUDJT_AUTH_TOKEN", TOKEN)]);
    master.stop();
}
