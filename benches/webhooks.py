#!/usr/bin/env python3
"""The webhook gateway's targets (issue 6), beside a baseline in the same run.

Usage: webhooks.py CASCADE_BIN [--quick]

- latency: one and four connections, signed GitHub pushes (a real 7 KiB payload, and
  one padded to 64 KiB), each with a new delivery id: signature check + durable enqueue
  (SQLite commit) per request; p50/p99 from the load generator.
- throughput: 32 connections, same requests: accepted per second.
- bad signatures: the same body with a wrong MAC, with one and four connections (what
  two cores serve without the client's own queueing dominating): all must be 401; p99.
- baseline: GET /healthz with the same connections, run right after each case (the
  HTTP floor, no work).
- load: the machine's load average when the run started.

`crates/cascade-server/benches/webhooks.rs` measures the core path without HTTP.
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
import uuid

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


def load(url, script, connections, threads=2):
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
    """A request script; every request gets a delivery id never sent before: a prefix new
    for each run of the load generator, the thread's number and a counter (its random
    numbers are the same in every thread and run unless seeded)."""
    prefix = uuid.uuid4().hex
    with open(path, "w") as f:
        f.write(f"""
wrk.method = "POST"
wrk.body = {json.dumps(body.decode())}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, {{
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = "{prefix}-" .. tostring(tid) .. "-" .. n,
    ["X-Hub-Signature-256"] = "sha256={signature}",
  }})
end
""")


def webhooks_counted():
    """`cascade_webhooks_total` by result, from `/metrics`."""
    import urllib.request

    text = urllib.request.urlopen(base + "/metrics").read().decode()
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'cascade_webhooks_total\{[^}]*result="(\w+)"[^}]*\} ([\d.e+]+)', text)}


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
results = {"bodies": {"small_bytes": len(small), "large_bytes": len(large)},
           "load_average": os.getloadavg()}


def case(key, script, connections):
    """One case, then `/healthz` with the same connections; how many webhooks the server
    queued, found duplicate or refused during the case."""
    threads = 1 if connections == 1 else 2
    body, signature = scripts[script]
    lua(script, body, signature)
    before = webhooks_counted()
    results[key] = load(base + "/hooks/github", script, connections, threads)
    after = webhooks_counted()
    results[key]["server"] = {k: int(after[k] - before.get(k, 0)) for k in after
                              if after[k] != before.get(k, 0)}
    results[key]["healthz"] = load(base + "/healthz", None, connections, threads)


scripts = {}
for name, body in (("small", small), ("large", large)):
    good = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    script = os.path.join(work, f"{name}.lua")
    scripts[script] = (body, good)
    case(f"latency_{name}_1", script, 1)
    case(f"latency_{name}_4", script, 4)
    case(f"throughput_{name}_32", script, 32)

bad = os.path.join(work, "bad.lua")
scripts[bad] = (small, "0" * 64)
for connections in (1, 4):
    case(f"bad_signatures_{connections}", bad, connections)
proc.send_signal(signal.SIGTERM)
proc.wait(10)
print(json.dumps(results, indent=2))
