#!/usr/bin/env python3
"""crudjt's published benchmark shape, for this package and crudjt 1.0.1.

Create, read, update and delete N tokens whose data packs to 256 bytes of
MessagePack, timing each phase; the median of R rounds. Two modes:

- in-process: the process is the master (``CRUDJT.Config.start_master``),
  calls go straight to the store;
- connected: a master runs in another process, this one calls it over
  gRPC (``CRUDJT.Config.connect_to_master``).

Usage::

    python benches/python_vs_crudjt.py [--reference-python PATH] [--rounds 10]

``PATH`` is the python of a virtualenv with ``crudjt==1.0.1`` installed
(``python -m venv /tmp/crudjt-ref && /tmp/crudjt-ref/bin/pip install
crudjt==1.0.1``). Both run in the same invocation, one after the other, and
the table gives the ratios. Each phase runs in a fresh process and store.

``--busy-poll SECONDS`` adds a connected run of this package with
``busy_poll`` on both the master and the client (crudjt 1.0.1 has no such
option; its row is compared with crudjt's plain connected run).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PHASES = ("create", "read", "update", "delete")


def session_data(seed: int) -> dict:
    """A session map that packs to exactly 256 bytes of MessagePack:
    fixmap(4) 1 + "user_id"+uint32 13 + "role"+"admin" 11 + "ip"+
    "203.0.113.7" 15 + "pad" 4 + str8 header 2 + 210 bytes."""
    return {
        "user_id": 1_000_000 + seed,
        "role": "admin",
        "ip": "203.0.113.7",
        "pad": "x" * 210,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key() -> str:
    return base64.b64encode(os.urandom(48)).decode()


def run_phases(crudjt_api, tokens: int) -> dict[str, float]:
    """One round: each phase over `tokens` tokens, in seconds."""
    data = [session_data(i) for i in range(tokens)]
    times = {}
    start = time.perf_counter()
    made = [crudjt_api.create(d, ttl=3600) for d in data]
    times["create"] = time.perf_counter() - start
    start = time.perf_counter()
    for t in made:
        if crudjt_api.read(t) is None:
            raise SystemExit("a token just created was not found")
    times["read"] = time.perf_counter() - start
    start = time.perf_counter()
    for t, d in zip(made, data):
        crudjt_api.update(t, d, ttl=3600)
    times["update"] = time.perf_counter() - start
    start = time.perf_counter()
    for t in made:
        crudjt_api.delete(t)
    times["delete"] = time.perf_counter() - start
    return times


def worker(args: argparse.Namespace) -> None:
    """Runs the rounds in this interpreter and prints JSON seconds per op."""
    import crudjt

    api = crudjt.CRUDJT
    if args.mode == "in-process":
        api.Config.start_master(secret_key=key(), store_jt_path=args.store, grpc_port=free_port())
    else:
        extra = {"busy_poll": args.busy_poll} if args.busy_poll else {}
        api.Config.connect_to_master(grpc_port=args.port, **extra)
    rounds = [run_phases(api, args.tokens) for _ in range(args.rounds)]
    per_op = {p: statistics.median(r[p] for r in rounds) / args.tokens for p in PHASES}
    print(json.dumps(per_op), flush=True)
    # crudjt 1.0.1 leaves threads behind; do not wait for them.
    os._exit(0)


def master(args: argparse.Namespace) -> None:
    """Starts a master on `args.port` and waits until stdin closes."""
    import crudjt

    extra = {"busy_poll": args.busy_poll} if args.busy_poll else {}
    crudjt.CRUDJT.Config.start_master(
        secret_key=key(), store_jt_path=args.store, grpc_port=args.port, **extra
    )
    print("ready", flush=True)
    sys.stdin.read()
    os._exit(0)


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no master on port {port}")


def measure(
    python: str, mode: str, tokens: int, rounds: int, busy_poll: float = 0.0
) -> dict[str, float]:
    script = os.path.abspath(__file__)
    with tempfile.TemporaryDirectory() as store:
        common = ["--tokens", str(tokens), "--rounds", str(rounds)]
        polling = ["--busy-poll", str(busy_poll)] if busy_poll else []
        if mode == "in-process":
            out = subprocess.run(
                [python, script, "worker", "--mode", mode, "--store", store, *common],
                check=True, capture_output=True, text=True,
            ).stdout
            return json.loads(out.splitlines()[-1])
        port = free_port()
        server = subprocess.Popen(
            [python, script, "master", "--store", store, "--port", str(port), *polling],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            server.stdout.readline()
            wait_for_port(port, time.monotonic() + 30)
            out = subprocess.run(
                [python, script, "worker", "--mode", mode, "--port", str(port), *common,
                 *polling],
                check=True, capture_output=True, text=True,
            ).stdout
            return json.loads(out.splitlines()[-1])
        finally:
            server.stdin.close()
            server.wait(timeout=30)


def drive(args: argparse.Namespace) -> None:
    plan = [("in-process", args.tokens), ("connected", args.connected_tokens)]
    rows = []
    for mode, tokens in plan:
        ours = measure(sys.executable, mode, tokens, args.rounds)
        ref = None
        if args.reference_python:
            ref = measure(args.reference_python, mode, tokens, args.rounds)
        rows.append((mode, tokens, ours, ref))
    if args.busy_poll:
        tokens = args.connected_tokens
        ours = measure(sys.executable, "connected", tokens, args.rounds, args.busy_poll)
        label = f"connected, busy_poll={args.busy_poll:g}"
        rows.append((label, tokens, ours, rows[-1][3]))
    print(f"median of {args.rounds} rounds; µs per call (ops/s)")
    print("| mode | op | crudjt (this) | crudjt 1.0.1 | speed-up |")
    print("|---|---|---|---|---|")
    for mode, tokens, ours, ref in rows:
        for p in PHASES:
            us = ours[p] * 1e6
            cell = f"{us:.2f} ({1 / ours[p]:,.0f})"
            if ref:
                ref_us = ref[p] * 1e6
                ref_cell = f"{ref_us:.2f} ({1 / ref[p]:,.0f})"
                ratio = f"{ref[p] / ours[p]:.1f}x"
            else:
                ref_cell = ratio = "-"
            print(f"| {mode}, {tokens:,} tokens | {p} | {cell} | {ref_cell} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    w = sub.add_parser("worker")
    w.add_argument("--mode", choices=["in-process", "connected"], required=True)
    w.add_argument("--store")
    w.add_argument("--port", type=int)
    w.add_argument("--tokens", type=int, required=True)
    w.add_argument("--rounds", type=int, required=True)
    w.add_argument("--busy-poll", type=float, default=0.0)
    m = sub.add_parser("master")
    m.add_argument("--store", required=True)
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--busy-poll", type=float, default=0.0)
    parser.add_argument("--reference-python")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=40_000)
    parser.add_argument("--connected-tokens", type=int, default=2_000)
    parser.add_argument("--busy-poll", type=float, default=0.0)
    args = parser.parse_args()
    if args.command == "worker":
        worker(args)
    elif args.command == "master":
        master(args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
