"""crudjt's documented usage, run the way a user runs it: a script file
started with the interpreter, the key in ``CRUDJT_SECRET_KEY``."""

from __future__ import annotations

import ast
import builtins
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import crudjt
from helpers import PROCESS_TIMEOUT, wait_until

#: The calls every usage script makes, printing each result.
CRUD_CALLS = """
token = CRUDJT.create({"user_id": 42, "role": 11}, ttl=3600 * 24 * 30, silence_read=10)
print(type(token).__name__, len(token))
print(CRUDJT.read(token))
print(CRUDJT.update(token, {"user_id": 42, "role": 8}, ttl=600, silence_read=100))
print(CRUDJT.read(token))
print(CRUDJT.delete(token))
print(CRUDJT.read(token))
print(CRUDJT.update(token, {"user_id": 42}))
print(CRUDJT.delete(token))
"""

CRUD_OUTPUT = [
    "str 22",
    "{'metadata': {'ttl': 2592000, 'silence_read': 9}, 'data': {'user_id': 42, 'role': 11}}",
    "True",
    "{'metadata': {'ttl': 600, 'silence_read': 99}, 'data': {'user_id': 42, 'role': 8}}",
    "True",
    "None",
    "False",
    "False",
]

START_MASTER = """
CRUDJT.Config.start_master(
    secret_key=os.environ["CRUDJT_SECRET_KEY"],
    store_jt_path=os.environ["STORE_PATH"],
    grpc_host="127.0.0.1",
    grpc_port=0,
)
"""


def run_script(tmp_path: Path, source: str, secret_key: str, **env: str) -> list[str]:
    """Writes ``source`` to a file, runs it with this interpreter from
    ``tmp_path``, and returns its output lines."""
    script = tmp_path / "app.py"
    script.write_text(source)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=PROCESS_TIMEOUT,
        env={**os.environ, "CRUDJT_SECRET_KEY": secret_key,
             "STORE_PATH": str(tmp_path / "store"), **env},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.splitlines()


def test_import_crudjt_then_bare_CRUDJT_as_the_docs_show(tmp_path, secret_key):
    """``import crudjt`` and then ``CRUDJT...`` with no other import, as
    crudjt 1.0.x documents it."""
    source = "import crudjt\nimport os\n" + START_MASTER
    source += 'print(CRUDJT.Config.master(), CRUDJT.Config.settings["grpc_port"] > 0)\n'
    source += CRUD_CALLS
    assert run_script(tmp_path, source, secret_key) == ["True True", *CRUD_OUTPUT]


def test_from_crudjt_import_CRUDJT(tmp_path, secret_key):
    """``from crudjt import CRUDJT`` works the same way."""
    source = "from crudjt import CRUDJT\nimport os\n" + START_MASTER + CRUD_CALLS
    assert run_script(tmp_path, source, secret_key) == CRUD_OUTPUT


def test_documented_usage_in_a_connected_process(tmp_path, secret_key, start_master):
    """The same calls in a process that connects to a master elsewhere give
    the same output."""
    master = start_master(secret_key, tmp_path / "master-store", facade=True)
    source = textwrap.dedent("""
        import crudjt
        import os
        CRUDJT.Config.connect_to_master(grpc_host="127.0.0.1",
                                        grpc_port=int(os.environ["MASTER_PORT"]))
        print(CRUDJT.Config.master(), CRUDJT.Config.was_started())
        """) + CRUD_CALLS
    lines = run_script(tmp_path, source, secret_key, MASTER_PORT=str(master.port))
    assert lines == ["False True", *CRUD_OUTPUT]
    master.stop()


def test_store_created_by_the_script_persists_for_the_next_run(tmp_path, secret_key):
    """A token made by one run of the app is readable by the next run with
    the same key and path (the first run never calls stop)."""
    first = "import crudjt\nimport os\n" + START_MASTER
    first += 'print(CRUDJT.create({"session": "abc"}, ttl=3600))\n'
    (token,) = run_script(tmp_path, first, secret_key)
    second = "import crudjt\nimport os\n" + START_MASTER
    second += f"print(CRUDJT.read({token!r}))\nCRUDJT.Config.stop()\n"
    assert run_script(tmp_path, second, secret_key) == [
        "{'metadata': {'ttl': 3600}, 'data': {'session': 'abc'}}"
    ]


def test_import_crudjt_puts_CRUDJT_into_builtins():
    """crudjt 1.0.x code uses bare ``CRUDJT`` after ``import crudjt``."""
    assert builtins.CRUDJT is crudjt.CRUDJT
    assert crudjt.CRUDJT is crudjt.facade
    for name in ("create", "read", "update", "delete", "Config"):
        assert hasattr(crudjt.CRUDJT, name)
    for name in ("start_master", "connect_to_master", "stop", "was_started", "master",
                 "settings"):
        assert hasattr(crudjt.CRUDJT.Config, name)


def test_error_classes_exist_as_in_crudjt_1_0():
    """``crudjt.errors.InternalError`` and ``InvalidState`` can be imported
    and caught as before; MasterUnavailable is an InternalError and a
    ConnectionError; none of them is a ValueError."""
    from crudjt.errors import InternalError, InvalidState, MasterUnavailable

    assert crudjt.errors.InternalError is InternalError
    for cls in (InternalError, InvalidState, MasterUnavailable):
        assert issubclass(cls, Exception)
        assert not issubclass(cls, ValueError)
    assert issubclass(MasterUnavailable, InternalError)
    assert issubclass(MasterUnavailable, ConnectionError)
    assert not issubclass(InvalidState, InternalError)


def test_package_exports_what_all_lists():
    """Everything in ``crudjt.__all__`` is importable."""
    for name in crudjt.__all__:
        assert hasattr(crudjt, name), name
    assert isinstance(crudjt.__version__, str) and crudjt.__version__
    assert crudjt.MAX_DATA_SIZE_LIMIT == 65536


def test_package_ships_py_typed_and_the_native_stub():
    """Type checkers find ``py.typed`` and ``_native.pyi`` next to
    ``__init__.py``."""
    package = Path(crudjt.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_native.pyi").is_file()


def _stub_names() -> dict[str, list[str]]:
    """Top-level names of ``_native.pyi`` mapped to the members declared in
    them (empty for functions and variables)."""
    stub = Path(crudjt.__file__).parent / "_native.pyi"
    tree = ast.parse(stub.read_text())
    names: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = [
                item.name for item in node.body if isinstance(item, ast.FunctionDef)
            ]
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = []
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = []
    return names


def _stub_fields(cls: str) -> set[str]:
    """The keys the stub declares for the TypedDict ``cls``."""
    stub = Path(crudjt.__file__).parent / "_native.pyi"
    for node in ast.parse(stub.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise AssertionError(f"{cls} is not in the stub")


def test_stats_have_the_keys_the_stub_declares(api):
    """Store.stats() and Client.stats() return the Stats the stub types."""
    api.create({"a": 1})
    stats = api.stats()
    assert set(stats) == _stub_fields("Stats")
    assert stats["tokens"] >= 1
    assert stats["durability"] == "interval"
    assert stats["max_data_size"] == 256
    assert set(stats["keys"][0]) == _stub_fields("KeyUsage")
    sweep = wait_until(lambda: api.stats()["last_sweep"])
    assert set(sweep) == _stub_fields("SweepReport")


@pytest.mark.parametrize("cls", ["Store", "Client"])
def test_native_stub_matches_the_module(cls):
    """Every method the stub declares on Store and Client exists, and every
    public method of the class is in the stub."""
    from crudjt import _native

    declared = set(_stub_names()[cls])
    actual = {name for name in dir(getattr(_native, cls)) if not name.startswith("_")}
    assert actual <= declared
    for name in declared:
        assert hasattr(getattr(_native, cls), name), name


def test_native_stub_declares_the_module_functions():
    """The stub's module-level names exist in the native module."""
    from crudjt import _native

    typed_dicts = {"Metadata", "ReadResult", "FlushReport", "SweepReport", "KeyUsage", "Stats"}
    for name in set(_stub_names()) - typed_dicts:
        assert hasattr(_native, name), name
