#!/usr/bin/env python3
"""The webhook gateway's targets (issue 6), beside a baseline in the same run.

Usage: webhooks.py CASCADE_BIN [--quick]

- latency: one connection, signed GitHub pushes (a real 7 KiB payload, and one padded
  to 64 KiB), each with a new delivery id: signature check + durable enqueue (SQLite
  commit) per request; p50/p99 from wrk.
- throughput: 32 connections, same requests: accepted per second.
- bad signatures: the same body with a wrong MAC: all must be 401; p99.
- baseline: GET /healthz with the same connections (the HTTP floor, no work).
"""

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
QUICK = "--quick" in sys.argv
SECONDS = 3 if QUICK else 10
SECRET = b"bench-secret"
HERE = os.path.dirname(os.path.abspath(__file__))
PUSH = os.path.join(HERE, "..", "..", "shared", "webhooks", "github", "push.json")


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wrk(url, script, connections, threads=2):
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{SECONDS}s", "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {}
    for p in ("50", "99"):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v = float(m.group(1))
        lat[p] = v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"per_s": rate, "requests": total, "p50_ms": lat["50"], "p99_ms": lat["99"],
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def lua(path, body, signature):
    with open(path, "w") as f:
        f.write(f"""
wrk.method = "POST"
wrk.body = {json.dumps(body.decode())}
local n = 0
local id = tostring(math.random(1, 1000000000))
request = function()
  n = n + 1
  return wrk.format(nil, nil, {{
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = id .. "-" .. n,
    ["X-Hub-Signature-256"] = "sha256={signature}",
  }})
end
""")


work = tempfile.mkdtemp(prefix="cascade-hooks-")
port = free_port()
proc = subprocess.Popen(
    [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(work, "data"),
     "--node-id", "bench", "--webhook-secret", SECRET.decode()],
    stderr=subprocess.PIPE, env={**os.environ, "CASCADE_LOG": "error"}, cwd=work)
while b"listening" not in proc.stderr.readline():
    pass
threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
base = f"http://127.0.0.1:{port}"

with open(PUSH, "rb") as f:
    small = f.read()
doc = json.loads(small)
doc["padding"] = "x" * (64 * 1024 - len(small) - 32)
large = json.dumps(doc).encode()
results = {"bodies": {"small_bytes": len(small), "large_bytes": len(large)}}

for name, body in (("small", small), ("large", large)):
    good = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    script = os.path.join(work, f"{name}.lua")
    lua(script, body, good)
    results[f"latency_{name}"] = wrk(base + "/hooks/github", script, connections=1, threads=1)
    results[f"throughput_{name}"] = wrk(base + "/hooks/github", script, connections=32)

bad = os.path.join(work, "bad.lua")
lua(bad, small, "0" * 64)
results["bad_signatures"] = wrk(base + "/hooks/github", bad, connections=8)
results["healthz_1"] = wrk(base + "/healthz", None, connections=1, threads=1)
results["healthz_32"] = wrk(base + "/healthz", None, connections=32)
proc.send_signal(signal.SIGTERM)
proc.wait(10)
print(json.dumps(results, indent=2))
