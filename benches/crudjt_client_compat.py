"""crudjt 1.0.1's own Python client (connect_to_master) against our master.

Not part of the test suite: it needs the published package from PyPI.

    python3 -m venv /tmp/crudjt-ref && /tmp/crudjt-ref/bin/pip install crudjt==1.0.1
    CRUDJT_SECRET_KEY=$(crudjt keygen) crudjt serve --store-path /tmp/compat-store --port 50061 &
    /tmp/crudjt-ref/bin/python benches/crudjt_client_compat.py 50061

Against this project's Python master instead of `crudjt serve`:

    python benches/python_vs_crudjt.py master --store /tmp/compat-store --port 50061
"""
import sys
from crudjt import CRUDJT

port = int(sys.argv[1])
CRUDJT.Config.connect_to_master(grpc_host="127.0.0.1", grpc_port=port)
data = {"user_id": 42, "name": "ada", "roles": ["admin", None], "pi": 3.25, "raw": b"\x00\xff"}
token = CRUDJT.create(data, ttl=3600, silence_read=3)
assert isinstance(token, str) and len(token) == 22, token
print("read 1:", CRUDJT.read(token) == {"metadata": {"ttl": 3600, "silence_read": 2}, "data": data})
assert CRUDJT.update(token, {"v": 2}) is True
print("read after update:", CRUDJT.read(token))
assert CRUDJT.delete(token) is True
assert CRUDJT.delete(token) is False
print("read after delete:", CRUDJT.read(token))
once = CRUDJT.create({"a": 1}, silence_read=1)
print("one-time:", CRUDJT.read(once), CRUDJT.read(once))
for bad in [dict(ttl=0), dict(silence_read=-5)]:
    try:
        CRUDJT.create({"a": 1}, **bad)
        print("accepted", bad)
    except Exception as e:
        print("refused", bad, type(e).__name__, str(e)[:120].replace("\n", " "))
print("ok")
