//! The gRPC surface of a real `crudjt serve` process, called through the
//! real gRPC stack over TCP and a Unix socket: the byte-exact contract,
//! health, reflection, bad input and many clients.

mod common;

use std::time::Duration;

use bytes::{Buf, BufMut};
use crudjt::Limits;
use crudjt_grpc::proto::token::token_service_client::TokenServiceClient;
use crudjt_grpc::proto::token::{CreateTokenRequest, ReadTokenRequest, UpdateTokenRequest};
use crudjt_grpc::{Client, ClientError, Target};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// A master on a port of its own, with its store in a temp dir.
struct Running {
    master: common::Master,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn tcp() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let master = common::Master::with_key(&dir.path().join("store"));
        Running { master, _dir: dir }
    }

    fn port(&self) -> u16 {
        self.master.port.expect("the master listens on TCP")
    }

    fn target(&self) -> Target {
        Target::Tcp {
            host: "127.0.0.1".into(),
            port: self.port(),
        }
    }

    async fn channel(&self) -> Channel {
        let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port()));
        endpoint.unwrap().connect().await.unwrap()
    }

    /// SIGTERM, and the master must exit 0.
    async fn stop(self) {
        self.master.stop();
    }
}

/// Sends and receives message bodies as raw bytes, so a test controls
/// every byte on the wire.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn raw_call(
    channel: Channel,
    method: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http_path(method);
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

fn http_path(method: &'static str) -> tonic::codegen::http::uri::PathAndQuery {
    tonic::codegen::http::uri::PathAndQuery::from_static(method)
}

/// `{"user": "ada"}` in MessagePack.
const DATA: &[u8] = &[0x81, 0xa4, b'u', b's', b'e', b'r', 0xa3, b'a', b'd', b'a'];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_encoded_requests_match_the_contract_byte_for_byte() {
    let master = Running::tcp().await;

    // CreateTokenRequest{packed_data = DATA, ttl = -1, silence_read = 3},
    // encoded by hand: field 1 bytes, field 2 varint (-1 as ten bytes of
    // two's complement), field 3 varint.
    let mut create = vec![0x0a, DATA.len() as u8];
    create.extend_from_slice(DATA);
    create.extend([
        0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ]);
    create.extend([0x18, 0x03]);
    let generated = CreateTokenRequest {
        packed_data: DATA.to_vec(),
        ttl: -1,
        silence_read: 3,
    };
    assert_eq!(prost::Message::encode_to_vec(&generated), create);

    let reply = raw_call(
        master.channel().await,
        "/token.TokenService/CreateToken",
        create,
    )
    .await;
    let reply = reply.unwrap();
    // CreateTokenResponse{token}: field 1, a 22-character string.
    assert_eq!(&reply[..2], &[0x0a, 22]);
    assert_eq!(reply.len(), 24);
    let token = String::from_utf8(reply[2..].to_vec()).unwrap();

    // ReadTokenRequest{token}: field 1 string.
    let mut read = vec![0x0a, 22];
    read.extend_from_slice(token.as_bytes());
    let reply = raw_call(
        master.channel().await,
        "/token.TokenService/ReadToken",
        read.clone(),
    );
    let reply = reply.await.unwrap();
    // ReadTokenResponse{packed_data}: field 1 bytes holding the result
    // map {"metadata": {"silence_read": 2}, "data": DATA}.
    let mut expected = vec![0x82, 0xa8];
    expected.extend_from_slice(b"metadata");
    expected.extend([0x81, 0xac]);
    expected.extend_from_slice(b"silence_read");
    expected.extend([0x02, 0xa4]);
    expected.extend_from_slice(b"data");
    expected.extend_from_slice(DATA);
    let mut framed = vec![0x0a, expected.len() as u8];
    framed.extend_from_slice(&expected);
    assert_eq!(reply, framed);

    // UpdateTokenRequest{token, packed_data = DATA, ttl = 60, silence_read = -1}
    // then UpdateTokenResponse{result = true}: field 1 varint 1.
    let mut update = vec![0x0a, 22];
    update.extend_from_slice(token.as_bytes());
    update.extend([0x12, DATA.len() as u8]);
    update.extend_from_slice(DATA);
    update.extend([
        0x18, 60, 0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ]);
    let reply = raw_call(
        master.channel().await,
        "/token.TokenService/UpdateToken",
        update,
    );
    assert_eq!(reply.await.unwrap(), vec![0x08, 0x01]);

    // DeleteTokenRequest{token} then DeleteTokenResponse{result = true};
    // a second delete answers false, which proto3 sends as no field.
    let delete = read.clone();
    let reply = raw_call(
        master.channel().await,
        "/token.TokenService/DeleteToken",
        delete.clone(),
    );
    assert_eq!(reply.await.unwrap(), vec![0x08, 0x01]);
    let reply = raw_call(
        master.channel().await,
        "/token.TokenService/DeleteToken",
        delete,
    );
    assert_eq!(reply.await.unwrap(), Vec::<u8>::new());

    // Not found: the single nil byte.
    let reply = raw_call(
        master.channel().await,
        "/token.TokenService/ReadToken",
        read,
    )
    .await;
    assert_eq!(reply.unwrap(), vec![0x0a, 0x01, 0xc0]);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_round_trips_all_four_calls() {
    let master = Running::tcp().await;
    let client = Client::connect(master.target()).await.unwrap();
    let token = client
        .create(DATA, Limits::new(Some(3600), Some(3)).unwrap())
        .await
        .unwrap();
    let entry = client.read(&token).await.unwrap().unwrap();
    assert_eq!(
        (entry.data.as_slice(), entry.ttl, entry.silence_read),
        (DATA, Some(3600), Some(2))
    );
    assert!(client.update(&token, &[0x80], Limits::NONE).await.unwrap());
    let entry = client.read(&token).await.unwrap().unwrap();
    assert_eq!(
        (entry.data, entry.ttl, entry.silence_read),
        (vec![0x80], None, None)
    );
    assert!(client.delete(&token).await.unwrap());
    assert!(client.read(&token).await.unwrap().is_none());
    assert!(!client.update(&token, &[0x80], Limits::NONE).await.unwrap());
    assert!(client.read("not-a-token").await.unwrap().is_none());
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.tokens, stats.max_data_size), (0, 256));
    master.stop().await;
}

async fn refused(result: Result<impl Sized, Status>) -> String {
    let status = result.err().expect("the master accepted bad input");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status.message().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_invalid_argument_and_hurts_no_one() {
    let master = Running::tcp().await;
    let client = Client::connect(master.target()).await.unwrap();
    let good = client.create(DATA, Limits::NONE).await.unwrap();
    let mut raw = TokenServiceClient::new(master.channel().await);
    let create = |packed: &[u8], ttl, silence_read| CreateTokenRequest {
        packed_data: packed.to_vec(),
        ttl,
        silence_read,
    };

    let message = refused(raw.create_token(create(b"\xc1", -1, -1)).await).await;
    assert!(message.contains("map"), "{message}");
    let message = refused(raw.create_token(create(b"\x92\x01\x02", -1, -1)).await).await;
    assert_eq!(message, "token data must be a map, got an array");
    let message = refused(raw.create_token(create(&[0x82, 0xa1], -1, -1)).await).await;
    assert!(message.contains("not valid MessagePack"), "{message}");
    let big = rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("d", "x".repeat(300))]));
    let message = refused(raw.create_token(create(&big.unwrap(), -1, -1)).await).await;
    assert!(message.contains("the limit is 256"), "{message}");
    for (ttl, silence_read) in [(0, -1), (-1, 0), (-2, -1), (-1, i64::MIN)] {
        let message = refused(raw.create_token(create(DATA, ttl, silence_read)).await).await;
        assert!(message.contains("must be at least 1"), "{message}");
    }
    let empty = ReadTokenRequest {
        token: String::new(),
    };
    assert_eq!(
        refused(raw.read_token(empty).await).await,
        "token must not be empty"
    );
    let update = UpdateTokenRequest {
        token: good.clone(),
        packed_data: vec![0x01],
        ttl: -1,
        silence_read: -1,
    };
    refused(raw.update_token(update).await).await;

    // A message far over the size bound is refused by the transport.
    let huge = create(&vec![0u8; 1 << 20], -1, -1);
    let status = raw.create_token(huge).await.unwrap_err();
    assert_ne!(status.code(), Code::Ok);

    // The same client-side refusals, before anything is sent.
    let local = client
        .create(b"\x92\x01\x02", Limits::NONE)
        .await
        .unwrap_err();
    assert!(
        matches!(&local, ClientError::InvalidArgument(m) if m == "token data must be a map, got an array")
    );
    assert!(matches!(
        client.read("").await,
        Err(ClientError::InvalidArgument(_))
    ));

    // Nothing of that disturbed the store or the connection.
    assert_eq!(client.read(&good).await.unwrap().unwrap().data, DATA);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let master = Running::tcp().await;
    let mut health = HealthClient::new(master.channel().await);
    for service in ["", "token.TokenService"] {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        let status = health.check(request).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(master.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("no service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "token.TokenService",
        "grpc.health.v1.Health",
        "crudjt.admin.v1.Admin",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }

    // The admin proto's messages resolve too, so grpcurl can decode the
    // stats reply, per-key usage included.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "crudjt.admin.v1.KeyUsage".into(),
        )),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
        panic!("no file for KeyUsage: {:?}", reply.message_response);
    };
    let names_it = |file: &Vec<u8>| file.windows(8).any(|w| w == b"KeyUsage");
    assert!(files.file_descriptor_proto.iter().any(names_it));
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_at_once() {
    let master = Running::tcp().await;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..32u32 {
        let target = master.target();
        tasks.spawn(async move {
            let client = Client::connect(target).await.unwrap();
            for i in 0..100u32 {
                let data = rmp_serde::to_vec_named(&std::collections::BTreeMap::from([
                    ("c", c),
                    ("i", i),
                ]));
                let data = data.unwrap();
                let token = client
                    .create(&data, Limits::new(None, Some(1)).unwrap())
                    .await
                    .unwrap();
                assert_eq!(client.read(&token).await.unwrap().unwrap().data, data);
                assert!(client.read(&token).await.unwrap().is_none());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_is_owner_only_and_serves() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crudjt.sock");
    let socket = path.to_str().unwrap();
    let env = [("CRUDJT_SECRET_KEY", common::KEY)];
    let args = ["--no-tcp", "--unix-socket", socket];
    let master = common::Master::start(&dir.path().join("store"), &args, &env);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let client = Client::connect(Target::Unix(path.clone())).await.unwrap();
    let token = client.create(DATA, Limits::NONE).await.unwrap();
    assert_eq!(client.read(&token).await.unwrap().unwrap().data, DATA);
    master.stop();
    assert!(!path.exists(), "the socket file outlived the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_master_is_a_clear_error() {
    let err = Client::connect(Target::Tcp {
        host: "127.0.0.1".into(),
        port: 1,
    })
    .await
    .err()
    .unwrap();
    assert!(matches!(err, ClientError::NotConnected { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot reach the crudjt master at 127.0.0.1:1"),
        "{err}"
    );

    // A master that goes away after the connection was made.
    let master = Running::tcp().await;
    let client = Client::connect(master.target()).await.unwrap();
    master.stop().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = client.read("AAAAAAAAAAAAAAAAAAAAAA").await.unwrap_err();
    assert!(matches!(err, ClientError::NotConnected { .. }), "{err:?}");
}
