"""TLS, client certificates and auth tokens between a Python master
(``Store.serve``) and a Python client (``crudjt.Client``), and through the
``CRUDJT`` facade's options. Certificates are made with the ``openssl``
command for each test."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import crudjt
from crudjt.errors import AccessDenied, MasterUnavailable

TOKEN = "0123456789abcdef0123456789abcdef"

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(dir: Path, name: str) -> Path:
    dir.mkdir()
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(dir / "ca.key"), "-out", str(dir / "ca.pem"),
    )
    return dir


def issue(ca: Path, name: str, usage: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (ca / f"{name}.{s}" for s in ("key", "csr", "pem", "ext"))
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr),
    )
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        f"extendedKeyUsage={usage}\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca / "ca.pem"), "-CAkey", str(ca / "ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
    )
    return cert, key


def test_an_auth_token_is_required_and_checked(store: crudjt.Store) -> None:
    """Without the token, or with another, the master refuses the call."""
    host, port = store.serve(port=0, auth_token=TOKEN)
    with crudjt.Client(host, port, auth_token=TOKEN) as client:
        token = client.create({"a": 1})
        assert client.read(token) == {"data": {"a": 1}}
    with crudjt.Client(host, port) as client:
        with pytest.raises(AccessDenied, match="requires an auth token"):
            client.read(token)
    with crudjt.Client(host, port, auth_token="fedcba9876543210fedcba9876543210") as client:
        with pytest.raises(PermissionError):
            client.create({"a": 1})
    with pytest.raises(ValueError, match="at least 16"):
        crudjt.Client(host, port, auth_token="short")


@needs_openssl
def test_tls_with_client_certificates(tmp_path: Path, store: crudjt.Store) -> None:
    """A client that trusts the master's CA and shows a certificate from
    the CA the master asks for is served; others cannot connect."""
    ca = make_ca(tmp_path / "ca", "crudjt-test-ca")
    server_cert, server_key = issue(ca, "server", "serverAuth")
    client_cert, client_key = issue(ca, "client", "clientAuth")
    rogue = make_ca(tmp_path / "rogue", "rogue-ca")
    rogue_cert, rogue_key = issue(rogue, "client", "clientAuth")
    _, port = store.serve(
        port=0, tls_cert=server_cert, tls_key=server_key, tls_client_ca=ca / "ca.pem"
    )

    good = dict(tls_ca=ca / "ca.pem", tls_cert=client_cert, tls_key=client_key)
    with crudjt.Client("localhost", port, **good) as client:
        token = client.create({"a": 1})
        assert client.read(token) == {"data": {"a": 1}}

    for bad in (
        {},  # plain gRPC to a TLS master
        dict(tls_ca=ca / "ca.pem"),  # no client certificate
        dict(tls_ca=ca / "ca.pem", tls_cert=rogue_cert, tls_key=rogue_key),
        dict(tls_ca=rogue / "ca.pem", tls_cert=client_cert, tls_key=client_key),
    ):
        with crudjt.Client("localhost", port, **bad) as client:
            with pytest.raises(MasterUnavailable):
                client.read(token)


@needs_openssl
def test_the_facade_passes_the_security_options(tmp_path: Path, secret_key: str) -> None:
    """start_master and connect_to_master take the same options, in two
    processes, as an application would use them."""
    ca = make_ca(tmp_path / "ca", "crudjt-test-ca")
    cert, key = issue(ca, "server", "serverAuth")
    script = f"""
import os, sys, crudjt
from crudjt import CRUDJT
if sys.argv[1] == "master":
    CRUDJT.Config.start_master(secret_key={secret_key!r}, store_jt_path={str(tmp_path / "s")!r},
        grpc_port=0, tls_cert={str(cert)!r}, tls_key={str(key)!r}, auth_token={TOKEN!r})
    print(CRUDJT.Config.settings["grpc_port"], flush=True)
    sys.stdin.read()
else:
    CRUDJT.Config.connect_to_master(grpc_host="localhost", grpc_port=int(sys.argv[2]),
        tls_ca={str(ca / "ca.pem")!r}, auth_token={TOKEN!r})
    token = CRUDJT.create({{"user_id": 42}}, ttl=60)
    print(CRUDJT.read(token))
"""
    path = tmp_path / "app.py"
    path.write_text(script)
    master = subprocess.Popen(
        [sys.executable, str(path), "master"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        port = master.stdout.readline().strip()
        out = subprocess.run(
            [sys.executable, str(path), "client", port],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "{'metadata': {'ttl': 60}, 'data': {'user_id': 42}}"
    finally:
        master.stdin.close()
        master.wait(timeout=30)


def test_serving_the_network_without_protection_warns(store: crudjt.Store) -> None:
    """crudjt 1.0.x code that binds every address keeps working, with a
    RuntimeWarning saying what it risks; the loopback default is quiet."""
    with pytest.warns(RuntimeWarning, match="without TLS and client authentication"):
        store.serve(host="0.0.0.0", port=0)
    store.stop_serving()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.serve(port=0)
