"""DESIGN.md "Semantics", checked in both modes: a ``Store`` opened in this
process and a ``Client`` of a master in another process (the ``api``
fixture). Both must give the same results."""

from __future__ import annotations

import base64
import enum
import re
import time
from collections import OrderedDict, defaultdict

import pytest

import crudjt
from helpers import wait_until

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
U64_MAX = 2**64 - 1


def sized(n: int) -> dict[str, str]:
    """Data whose MessagePack encoding is exactly ``n`` bytes, for
    37 <= n <= 260: fixmap(1) (1 byte) + fixstr "k" (2) + str8 header (2)
    + the string."""
    assert 32 <= n - 5 < 256
    return {"k": "x" * (n - 5)}


def nested_lists(levels: int) -> dict[str, object]:
    """A dict holding lists nested so that the data has ``levels`` levels
    of containers, the dict included."""
    value: list[object] = []
    for _ in range(levels - 2):
        value = [value]
    return {"a": value}


def test_token_is_22_chars_of_urlsafe_base64_for_16_bytes(api):
    """A token is safe in URLs and cookies: 22 chars of unpadded base64url."""
    tokens = [api.create({"n": i}) for i in range(20)]
    for token in tokens:
        assert TOKEN_RE.match(token), token
        assert len(base64.urlsafe_b64decode(token + "==")) == 16
    assert len(set(tokens)) == len(tokens)


def test_create_never_returns_a_token_that_is_already_live(api):
    """Many creates give distinct tokens, each reading back its own data;
    a deleted token's successors never reuse it."""
    tokens = [api.create({"same": True, "i": i}) for i in range(300)]
    assert len(set(tokens)) == 300
    for i in (0, 150, 299):
        assert api.read(tokens[i]) == {"data": {"same": True, "i": i}}
    for token in tokens[:100]:
        assert api.delete(token) is True
    assert not set(tokens) & {api.create({"again": True}) for _ in range(100)}


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "A" * 22,
        "_" * 22,
        "AAAAAAAAAAAAAAAAAAAAAA==",
        "!" * 22,
        "x" * 500,
        "é" * 22,
        " ",
    ],
)
def test_unknown_or_garbage_token_is_simply_not_found(api, token):
    """A string that is not a live token reads None; update and delete
    give False, and nothing raises."""
    assert api.read(token) is None
    assert api.update(token, {"a": 1}) is False
    assert api.delete(token) is False


def test_token_with_a_lone_surrogate_is_not_found(api):
    """Even a str that cannot be UTF-8 encoded is just not a token."""
    assert api.read("\ud800" * 22) is None
    assert api.update("\ud800" * 22, {"a": 1}) is False
    assert api.delete("\ud800" * 22) is False


def test_token_with_one_char_changed_is_not_found(api):
    """Flipping one character of a live token does not reach its record
    (or any other)."""
    token = api.create({"a": 1})
    for i in (0, 10, 21):
        changed = token[:i] + ("B" if token[i] != "B" else "C") + token[i + 1:]
        assert api.read(changed) is None
    assert api.read(token) == {"data": {"a": 1}}


def test_empty_token_is_an_error(api):
    """An empty token is the caller's mistake, not a missing token."""
    for call in (
        lambda: api.read(""),
        lambda: api.update("", {"a": 1}),
        lambda: api.delete(""),
    ):
        with pytest.raises(ValueError, match="token must not be empty"):
            call()


def test_ttl_reads_back_rounded_up(api):
    """A token created with ttl 3600 reads 3600 at once."""
    token = api.create({"a": 1}, ttl=3600)
    assert api.read(token) == {"metadata": {"ttl": 3600}, "data": {"a": 1}}


@pytest.mark.parametrize(
    ("ttl", "silence_read", "metadata"),
    [
        (None, None, None),
        (3600, None, {"ttl": 3600}),
        (None, 5, {"silence_read": 4}),
        (60, 5, {"ttl": 60, "silence_read": 4}),
    ],
)
def test_metadata_holds_only_the_limits_that_are_set(api, ttl, silence_read, metadata):
    """``metadata`` lists only the limits given at create, and is absent
    when there are none."""
    token = api.create({"a": 1}, ttl=ttl, silence_read=silence_read)
    expected = {"data": {"a": 1}} if metadata is None else {"metadata": metadata, "data": {"a": 1}}
    result = api.read(token)
    assert result == expected
    if metadata is None:
        assert "metadata" not in result


def test_silence_read_counts_down_and_the_last_read_deletes(api):
    """Created with silence_read=3, reads give 2, 1, 0 and then None; the
    token is then gone for update and delete too."""
    token = api.create({"a": 1}, silence_read=3)
    budgets = [api.read(token)["metadata"]["silence_read"] for _ in range(3)]
    assert budgets == [2, 1, 0]
    assert api.read(token) is None
    assert api.update(token, {"a": 2}) is False
    assert api.delete(token) is False


def test_one_time_token_reads_once(api):
    """silence_read=1 is a one-time token: the first read returns the data."""
    token = api.create({"once": True}, silence_read=1)
    assert api.read(token) == {"metadata": {"silence_read": 0}, "data": {"once": True}}
    assert api.read(token) is None


def test_update_replaces_data_and_both_limits(api):
    """update sets the data and both limits; a limit left out means no
    limit, not "keep the old one"."""
    token = api.create({"v": 1, "old": "x"}, ttl=100, silence_read=10)
    assert api.update(token, {"v": 2}) is True
    assert api.read(token) == {"data": {"v": 2}}

    assert api.update(token, {"v": 3}, ttl=50, silence_read=2) is True
    assert api.read(token) == {"metadata": {"ttl": 50, "silence_read": 1}, "data": {"v": 3}}

    assert api.update(token, {"v": 4}, silence_read=7) is True
    assert api.read(token) == {"metadata": {"silence_read": 6}, "data": {"v": 4}}

    assert api.update(token, {"v": 5}, ttl=3600) is True
    assert api.read(token) == {"metadata": {"ttl": 3600}, "data": {"v": 5}}


def test_update_gives_a_spent_token_a_fresh_budget(api):
    """A token with one read left can be updated to a new budget."""
    token = api.create({"a": 1}, silence_read=2)
    assert api.read(token)["metadata"] == {"silence_read": 1}
    assert api.update(token, {"a": 2}, silence_read=3) is True
    assert [api.read(token)["metadata"]["silence_read"] for _ in range(3)] == [2, 1, 0]
    assert api.read(token) is None


def test_delete_removes_the_token(api):
    """delete gives True once; then the token is not found anywhere."""
    token = api.create({"a": 1}, ttl=3600, silence_read=5)
    other = api.create({"b": 2})
    assert api.delete(token) is True
    assert api.read(token) is None
    assert api.delete(token) is False
    assert api.update(token, {"a": 2}) is False
    assert api.read(other) == {"data": {"b": 2}}


ROUND_TRIP = {
    "empty": {},
    "nested": {"user": {"id": 42, "roles": ["admin", {"scope": ["a", "b"]}], "prefs": {}}},
    "ints": {"zero": 0, "small": 7, "neg": -1, "neg_big": -(2**63), "u64_max": U64_MAX,
             "i64_max": 2**63 - 1, "u32": 2**32, "neg_mid": -129},
    "floats": {"pi": 3.141592653589793, "neg": -0.5, "zero": 0.0, "big": 1e300,
               "inf": float("inf")},
    "strings": {"ascii": "hello", "non_ascii": "héllo wörld ✓ 日本語 🙂", "empty": "",
                "long": "y" * 100},
    "bytes": {"b": b"\x00\x01\xff", "empty": b""},
    "bools_none": {"t": True, "f": False, "n": None},
    "non_str_keys": {1: "int", -2: "neg", None: "nil", False: "bool", 2.5: "float",
                     b"k": "bytes"},
    "non_ascii_keys": {"ключ": "значение"},
    "list_in_list": {"m": [[1, 2], [], [[None]]]},
}


@pytest.mark.parametrize("data", ROUND_TRIP.values(), ids=ROUND_TRIP.keys())
def test_data_round_trips_exactly(api, data):
    """Reading returns exactly what was stored, with the same types."""
    token = api.create(data)
    result = api.read(token)
    assert result == {"data": data}
    assert _types(result["data"]) == _types(data)


def _types(value: object) -> object:
    """The shape of ``value`` with every leaf replaced by its type, so that
    1 == 1.0 == True cannot hide a changed type."""
    if isinstance(value, dict):
        return {(type(k), k): _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


def test_dict_subclasses_are_data(api):
    """OrderedDict and defaultdict are dicts: they are stored and read back
    as plain dicts."""
    for data in (OrderedDict(b=1, a=2), defaultdict(list, a=[1])):
        result = api.read(api.create(data))
        assert result == {"data": dict(data)}
        assert type(result["data"]) is dict


def test_stored_data_is_a_copy_of_the_callers_dict(api):
    """Changing the dict given to create or update afterwards, or a dict
    that read returned, changes nothing stored: every read gives the
    stored data afresh."""
    data = {"name": "ann", "n": 1}
    token = api.create(data)
    data["name"] = "changed"
    first = api.read(token)
    assert first == {"data": {"name": "ann", "n": 1}}
    first["data"]["n"] = 999
    first["data"]["extra"] = True
    assert api.read(token) == {"data": {"name": "ann", "n": 1}}

    new = {"name": "bob", "tags": ["a"]}
    assert api.update(token, new) is True
    new["name"] = "changed"
    new["tags"].append("b")
    second = api.read(token)
    assert second == {"data": {"name": "bob", "tags": ["a"]}}
    second["data"]["tags"].append("c")
    assert api.read(token) == {"data": {"name": "bob", "tags": ["a"]}}
    assert api.read(token)["data"] is not api.read(token)["data"]


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    """A str subclass, as some frameworks hand out."""


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"color": Color.RED, "name": Name("ann")}, {"color": 1, "name": "ann"}),
        ({Name("key"): Color.RED}, {"key": 1}),
    ],
    ids=["values", "key"],
)
def test_subclasses_of_int_and_str_read_back_as_plain_values(api, data, expected):
    """An IntEnum or a str subclass is stored as its value and reads back
    as a plain int or str, on the first read and on every later one."""
    token = api.create(data)
    for _ in range(3):
        result = api.read(token)["data"]
        assert _types(result) == _types(expected)
        assert result == expected
    assert api.update(token, data) is True
    assert _types(api.read(token)["data"]) == _types(expected)


def test_nan_round_trips(api):
    """A NaN float is stored and read back as NaN."""
    token = api.create({"nan": float("nan")})
    value = api.read(token)["data"]["nan"]
    assert isinstance(value, float) and value != value


def test_tuples_come_back_as_lists(api):
    """Tuples pack as MessagePack arrays, so they read back as lists (or as
    tuples when used as keys); bytearray reads back as bytes."""
    token = api.create({"t": (1, "two", (3,)), "ba": bytearray(b"xy"), (4, 5): "key"})
    result = api.read(token)
    assert result == {"data": {"t": [1, "two", [3]], "ba": b"xy", (4, 5): "key"}}
    assert type(result["data"]["t"]) is list and type(result["data"]["ba"]) is bytes


def test_data_nested_128_levels_round_trips(api):
    """The deepest data the store takes reads back whole in both modes."""
    data = nested_lists(128)
    token = api.create(data)
    assert api.read(token) == {"data": data}


def test_data_of_exactly_256_packed_bytes_is_accepted(api):
    """The default limit is 256 bytes of MessagePack, inclusive."""
    data = sized(256)
    token = api.create(data)
    assert api.read(token) == {"data": data}
    assert api.update(token, sized(256)) is True


def test_data_of_257_packed_bytes_is_refused(api):
    """One byte over the limit is an error, at create and at update."""
    token = api.create({"a": 1})
    with pytest.raises(ValueError, match="^token data is 257 bytes, the limit is 256$"):
        api.create(sized(257))
    with pytest.raises(ValueError, match="^token data is 257 bytes, the limit is 256$"):
        api.update(token, sized(257))
    assert api.read(token) == {"data": {"a": 1}}


def test_ttl_expiry_removes_the_token(api):
    """A token with ttl=1 reads 1 at once and is gone once the second has
    passed, for read, update and delete."""
    token = api.create({"a": 1}, ttl=1)
    untouched = api.create({"b": 1}, ttl=1)
    created = time.monotonic()
    first = api.read(token)
    if first is not None:  # None only if this machine stalled a whole second
        assert first == {"metadata": {"ttl": 1}, "data": {"a": 1}}
    wait_until(lambda: api.read(token) is None, timeout=5.0, interval=0.1)
    assert time.monotonic() - created > 0.5
    assert api.update(token, {"a": 2}) is False
    assert api.delete(token) is False
    if isinstance(api, crudjt.Store):
        # Expired records leave the disk too (``untouched`` at least, which
        # no call has looked at since it expired).
        assert api.sweep() >= 1
        assert api.sweep() == 0
    assert api.read(untouched) is None


def test_flush_compact_and_sweep_keep_live_tokens(store):
    """The store's maintenance calls leave every live token readable."""
    tokens = {store.create({"i": i}, ttl=3600): i for i in range(100)}
    for token in list(tokens)[::2]:
        assert store.delete(token) is True
        del tokens[token]
    store.flush()
    assert store.stats()["pending_writes"] == 0
    store.compact()
    assert store.sweep() == 0
    for token, i in tokens.items():
        assert store.read(token)["data"] == {"i": i}
    assert store.stats()["tokens"] == 50


@pytest.mark.parametrize("limit", [1, U64_MAX], ids=["one", "u64_max"])
def test_smallest_and_largest_limits_are_accepted(api, limit):
    """ttl and silence_read accept 1 and 2**64-1; huge values saturate
    instead of failing."""
    token = api.create({"a": 1}, ttl=limit, silence_read=limit)
    result = api.read(token)
    assert result["data"] == {"a": 1}
    metadata = result["metadata"]
    if limit == 1:
        assert metadata == {"ttl": 1, "silence_read": 0}
        assert api.read(token) is None
    else:
        # Years beyond any clock; the wire carries the budget as int64, so
        # a connected process may see it capped at 2**63-1.
        assert metadata["ttl"] > 10**15
        assert metadata["silence_read"] >= 2**63 - 2
        assert api.read(token)["metadata"]["silence_read"] == metadata["silence_read"] - 1
        assert api.update(token, {"a": 2}, ttl=limit, silence_read=limit) is True


def test_reopening_the_store_keeps_tokens(reopenable):
    """Closing the store and opening it again with the same key keeps every
    token, its data, its spent reads and its deletions."""
    api = reopenable.api
    plain = api.create({"user": "ann", "roles": ["a", "b"]})
    budget = api.create({"b": 1}, ttl=3600, silence_read=3)
    assert api.read(budget)["metadata"]["silence_read"] == 2
    updated = api.create({"v": 1})
    assert api.update(updated, {"v": 2}, silence_read=9) is True
    deleted = api.create({"d": 1})
    assert api.delete(deleted) is True

    api = reopenable.reopen()

    assert api.read(plain) == {"data": {"user": "ann", "roles": ["a", "b"]}}
    result = api.read(budget)
    assert result["data"] == {"b": 1}
    assert result["metadata"]["silence_read"] == 1
    assert 3598 <= result["metadata"]["ttl"] <= 3600
    assert api.read(updated) == {"metadata": {"silence_read": 8}, "data": {"v": 2}}
    assert api.read(deleted) is None
    fresh = api.create({"after": "reopen"})
    assert fresh not in (plain, budget, updated, deleted)


def test_larger_max_data_size_is_honoured(tmp_path, secret_key, start_master):
    """A store (and so a master) opened with max_data_size=1024 takes data
    up to 1024 bytes, in both modes, and names its own limit when refusing."""
    big = {"k": "x" * 1000}  # 1 + 2 + 3 (str16 header) + 1000 = 1006 bytes
    too_big = {"k": "x" * 1100}  # 1106 bytes
    master = start_master(secret_key, tmp_path / "served", max_data_size=1024)
    with crudjt.Store(secret_key, tmp_path / "local", max_data_size=1024) as store, \
            crudjt.Client(port=master.port) as client:
        assert store.max_data_size == 1024
        for api in (store, client):
            token = api.create(big)
            assert api.read(token) == {"data": big}
            with pytest.raises(ValueError, match="^token data is 1106 bytes, the limit is 1024$"):
                api.create(too_big)
