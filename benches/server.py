#!/usr/bin/env python3
"""The server tier's targets (issue 5), each beside a baseline measured in the same run.

Usage: server.py CASCADE_BIN [--quick]

- submissions: wrk POSTs one-task DAGs (aimed at another node, so only the durable
  intake is measured); baseline: wrk on GET /healthz (the HTTP floor, no commit).
- end to end: N one-task DAGs over 4 scopes, submitted by 16 keep-alive connections,
  timed until the last one is recorded completed.
- reads with 1,000,000 task rows: wrk on GET /api/v1/runs/{id} (latency percentiles)
  and `cascade dag status` run 200 times; baselines: the same GET on a fresh database,
  and `cascade --version` (process start).
- worker start to first claim: spawn `cascade worker run` with one run queued; the
  claim time is the run's started_at; baseline: `cascade --version` start to exit.
- idle RSS of serve (VmHWM after start, and VmRSS after the load).
"""

import calendar
import http.client
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
QUICK = "--quick" in sys.argv


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Serve:
    def __init__(self, data, *extra):
        self.data = data
        self.port = free_port()
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", data,
             "--node-id", "bench", *extra],
            stderr=subprocess.PIPE, env={**os.environ, "CASCADE_LOG": "warn"})
        self.proc.stderr.readline()
        threading.Thread(target=lambda: self.proc.stderr.read(), daemon=True).start()
        # Every API request authenticates, as the server's admin (DATA_DIR/admin.token).
        with open(os.path.join(data, "admin.token")) as f:
            self.token = f.read().strip()
        self.auth = {"Authorization": f"Bearer {self.token}"}

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wrk(url, seconds, script=None, connections=32, token=None):
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for p in ("50", "99"):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v = float(m.group(1))
        lat[p] = v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, lat, int(non2xx.group(1)) if non2xx else 0


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def timed(cmd, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - t) * 1000)
    return times


results = {}
work = tempfile.mkdtemp(prefix="cascade-bench-")
seconds = 3 if QUICK else 10

# 1. Submissions accepted per minute.
lua = os.path.join(work, "post.lua")
with open(lua, "w") as f:
    f.write('wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            'wrk.body = \'{"tasks": [{"id": "a", "run": "true"}], "scope": "global", '
            '"target_node": "elsewhere"}\'\n')
serve = Serve(os.path.join(work, "submit"))
time.sleep(0.5)
results["idle_rss_kib"] = serve.rss_kib("VmHWM")
base_rate, base_lat, _ = wrk(serve.url("/healthz"), seconds)
rate, lat, bad = wrk(serve.url("/api/v1/dag/execute"), seconds, lua, token=serve.token)
# The cost of authentication alone: the smallest authenticated read (the workers, a
# table of one row or none) beside /healthz.
auth_rate, auth_lat, auth_bad = wrk(serve.url("/api/v1/workers"), seconds, token=serve.token)
results["auth"] = {"get_workers_per_s": auth_rate, "get_workers_p99_ms": auth_lat["99"],
                   "healthz_per_s": base_rate, "healthz_p99_ms": base_lat["99"],
                   "ratio_to_healthz": auth_rate / base_rate, "non_2xx": auth_bad}
results["submit"] = {"per_min": rate * 60, "p50_ms": lat["50"], "p99_ms": lat["99"],
                     "non_2xx": bad, "healthz_per_min": base_rate * 60,
                     "healthz_p99_ms": base_lat["99"], "ratio_to_healthz": rate / base_rate}
results["rss_after_load_kib"] = serve.rss_kib()
serve.stop()

# 2. One-task DAGs end to end.
n = 600 if QUICK else 3000
data = os.path.join(work, "e2e")
serve = Serve(data)
time.sleep(0.3)
bodies = [json.dumps({"dag_id": f"proj-p{i % 4}-d{i}", "tasks": [{"id": "a", "run": "true"}]})
          for i in range(n)]
start = time.perf_counter()


def submitter(chunk):
    conn = http.client.HTTPConnection("127.0.0.1", serve.port)
    for body in chunk:
        conn.request("POST", "/api/v1/dag/execute", body,
                     {"Content-Type": "application/json", **serve.auth})
        r = conn.getresponse()
        r.read()
        assert r.status == 202, r.status


threads = [threading.Thread(target=submitter, args=(bodies[i::16],)) for i in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
submitted = time.perf_counter() - start
db = sqlite3.connect(os.path.join(data, "cascade.db"))
while True:
    done = db.execute("SELECT count(*) FROM dag_runs WHERE status IN ('completed', 'failed')").fetchone()[0]
    if done >= n:
        break
    time.sleep(0.05)
elapsed = time.perf_counter() - start
failed = db.execute("SELECT count(*) FROM dag_runs WHERE status = 'failed'").fetchone()[0]
results["e2e"] = {"dags": n, "per_min": n / elapsed * 60, "seconds": elapsed,
                  "submit_seconds": submitted, "failed": failed}
serve.stop()

# 3. Reads with 1,000,000 task rows.
data = os.path.join(work, "reads")
serve = Serve(data)
time.sleep(0.3)
c = http.client.HTTPConnection("127.0.0.1", serve.port)
c.request("POST", "/api/v1/dag/execute",
          json.dumps({"dag_id": "proj-r-probe", "tasks": [{"id": f"t{i}", "run": "true"} for i in range(10)]}),
          serve.auth)
probe = json.loads(c.getresponse().read())["run_id"]
while sqlite3.connect(os.path.join(data, "cascade.db")).execute(
        "SELECT status FROM dag_runs WHERE run_id = ?", (probe,)).fetchone()[0] != "completed":
    time.sleep(0.05)
fresh_rate, fresh_lat, _ = wrk(serve.url(f"/api/v1/runs/{probe}"), seconds, connections=4,
                               token=serve.token)
fresh_cli = timed([BIN, "dag", "status", "proj-r-probe", "--server", serve.url(), "--data-dir", data],
                  100 if QUICK else 200)
serve.stop()
db = sqlite3.connect(os.path.join(data, "cascade.db"))
runs, per_run = 100_000, 10
now = "2026-01-01T00:00:00Z"
db.execute("BEGIN")
db.executemany("INSERT INTO dag_runs (run_id, dag_id, trigger, status, created_at) VALUES (?, ?, 'api', 'completed', ?)",
               ((f"bulk-{r}", f"proj-r-bulk{r % 1000}", now) for r in range(runs)))
db.executemany("INSERT INTO task_executions (run_id, task_id, position, status, attempt) VALUES (?, ?, ?, 'completed', 1)",
               ((f"bulk-{r}", f"t{t}", t) for r in range(runs) for t in range(per_run)))
db.execute("COMMIT")
rows = db.execute("SELECT count(*) FROM task_executions").fetchone()[0]
db.close()
serve = Serve(data)
time.sleep(0.3)
big_rate, big_lat, _ = wrk(serve.url(f"/api/v1/runs/{probe}"), seconds, connections=4,
                           token=serve.token)
big_cli = timed([BIN, "dag", "status", "proj-r-probe", "--server", serve.url(), "--data-dir", data],
                100 if QUICK else 200)
dir_cli = timed([BIN, "dag", "status", "proj-r-probe", "--data-dir", data], 100 if QUICK else 200)
version = timed([BIN, "--version"], 100 if QUICK else 200)
serve.stop()
results["reads"] = {
    "task_rows": rows,
    "get_run_p99_ms": big_lat["99"], "get_run_p50_ms": big_lat["50"],
    "get_run_fresh_p99_ms": fresh_lat["99"], "get_run_per_s": big_rate,
    "dag_status_server_p99_ms": pct(big_cli, 99), "dag_status_server_p50_ms": pct(big_cli, 50),
    "dag_status_server_fresh_p99_ms": pct(fresh_cli, 99),
    "dag_status_dir_p99_ms": pct(dir_cli, 99),
    "version_p99_ms": pct(version, 99), "version_p50_ms": pct(version, 50),
}

# 4. Worker start to first claim.
data = os.path.join(work, "claim")
claims, starts = [], []
for i in range(10 if QUICK else 30):
    spec = os.path.join(work, "one.json")
    with open(spec, "w") as f:
        json.dump({"dag_id": f"one-{i}", "scope": "global", "tasks": [{"id": "a", "run": "true"}]}, f)
    out = subprocess.run([BIN, "dag", "submit", spec, "--data-dir", data, "--output", "json"],
                         capture_output=True, text=True).stdout
    run_id = json.loads(out)["run_id"]
    t0 = time.time_ns()
    worker = subprocess.Popen([BIN, "worker", "run", "--id", "worker-global", "--scope", "global",
                               "--data-dir", data], stderr=subprocess.DEVNULL,
                              env={**os.environ, "CASCADE_LOG": "warn"})
    db = sqlite3.connect(os.path.join(data, "cascade.db"))
    while True:
        row = db.execute("SELECT started_at FROM dag_runs WHERE run_id = ?", (run_id,)).fetchone()
        if row and row[0]:
            break
        time.sleep(0.001)
    db.close()
    ts = row[0]
    whole, frac = ts.rstrip("Z").split(".") if "." in ts else (ts.rstrip("Z"), "0")
    secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    claimed_ns = secs * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
    claims.append((claimed_ns - t0) / 1e6)
    worker.send_signal(signal.SIGTERM)
    worker.wait()
results["worker_claim"] = {"median_ms": statistics.median(claims), "max_ms": max(claims),
                           "version_median_ms": statistics.median(version)}

print(json.dumps(results, indent=2))
