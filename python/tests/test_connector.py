"""`cs.run(connector=...)`: a user's connector object receives the run's telemetry (DESIGN
§5 topics and payloads) through the Unix socket bridge and sends control commands back
through its `subscribe` callback; a connector that raises or hangs neither fails nor slows
the run; `cs.connectors.Nats(url)` hands the URL to the engine's own NATS connector (a
real nats-server here).

Each test runs a program (`python conn.py ...`) in a temporary project, as in
test_run.py. Time bounds are loose ceilings, never measurements.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, env_for_runs

PROGRAM = """
import asyncio, json, sys, time
import cascade as cs

@cs.task(resources={"cpu": 1})
def build() -> str:
    return "built"

@cs.task
def test(b: str) -> str:
    return b + "+tested"

@cs.task
def long() -> int:
    time.sleep(60)
    return 1

@cs.task
def short() -> int:
    time.sleep(1)
    return 1

def chain():
    return test(build())

def forever():
    return long()

def second():
    return short()

class Recorder:
    def __init__(self, cancel_on=None):
        self.calls = []
        self.callbacks = []
        self.cancel_on = cancel_on

    async def connect(self):
        self.calls.append(["connect"])

    async def disconnect(self):
        self.calls.append(["disconnect"])

    async def publish(self, topic, payload, qos=0):
        self.calls.append(["publish", topic, payload, qos])
        body = payload["body"]
        if self.cancel_on and body.get("task_id") == self.cancel_on and body.get("state") == "RUNNING":
            run_id = payload["header"]["run_id"]
            for filt, callback in self.callbacks:
                callback(filt[:-1] + "cancel", {"command": "cancel", "run_id": run_id})

    def subscribe(self, topic, callback):
        self.calls.append(["subscribe", topic])
        self.callbacks.append((topic, callback))

class Raises:
    def connect(self): pass
    def disconnect(self): pass
    def publish(self, topic, payload, qos=0):
        raise ConnectionError("broker is down")
    def subscribe(self, topic, callback): pass

class SleepsSync:
    def connect(self): pass
    def disconnect(self): pass
    def publish(self, topic, payload, qos=0):
        time.sleep(10)
    def subscribe(self, topic, callback): pass

class SleepsAsync:
    async def connect(self): pass
    async def disconnect(self): pass
    async def publish(self, topic, payload, qos=0):
        await asyncio.sleep(10)
    def subscribe(self, topic, callback): pass

if __name__ == "__main__":
    pipeline, kind = sys.argv[1], sys.argv[2]
    if kind == "record":
        connector = Recorder()
    elif kind == "cancel":
        connector = Recorder(cancel_on="long")
    elif kind == "nats":
        connector = cs.connectors.Nats(sys.argv[3])
    elif kind == "mqtt":
        connector = cs.connectors.Mqtt(sys.argv[3])
    else:
        connector = {"raises": Raises, "sleeps-sync": SleepsSync, "sleeps-async": SleepsAsync}[kind]()
    assert kind in ("nats", "mqtt") or isinstance(connector, cs.Connector)
    start = time.monotonic()
    try:
        value = cs.run(globals()[pipeline](), connector=connector)
        outcome = {"value": value}
    except cs.RunFailed as e:
        outcome = {"status": e.status, "failed": e.failed}
    outcome["seconds"] = time.monotonic() - start
    outcome["calls"] = getattr(connector, "calls", [])
    print("OUTCOME " + json.dumps(outcome), flush=True)
"""


def program(project: Project, *args: str, timeout: float = 120) -> tuple[dict[str, Any], str]:
    project.write("conn.py", PROGRAM)
    proc = subprocess.run(
        [sys.executable, "conn.py", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env_for_runs(),
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert proc.returncode == 0 and lines, f"{proc.stdout}\n{proc.stderr}"
    outcome: dict[str, Any] = json.loads(lines[-1][len("OUTCOME ") :])
    return outcome, proc.stderr


def transitions(publishes: list[list[Any]]) -> list[tuple[str, str]]:
    out = []
    for _, _, payload, _ in publishes:
        body = payload["body"]
        if "event" in body:
            out.append(("engine", body["event"]))
        elif "state" in body:
            out.append((body["task_id"], body["state"]))
        else:
            out.append((body.get("resource_name", "?"), body["action"]))
    return out


def test_a_connector_receives_every_event_with_the_design_topics(project: Project) -> None:
    outcome, stderr = program(project, "chain", "record")
    assert outcome["value"] == "built+tested", stderr
    calls = outcome["calls"]
    assert calls[0] == ["connect"]
    assert calls[1] == ["subscribe", "cascade/control/local/default/#"]
    assert calls[-1] == ["disconnect"]
    publishes = calls[2:-1]
    assert all(c[0] == "publish" for c in publishes), calls
    run_id = publishes[0][2]["header"]["run_id"]
    for _, topic, payload, qos in publishes:
        assert topic == f"cascade/telemetry/local/default/{run_id}/events"
        assert qos == 0
        header = payload["header"]
        assert set(header) == {"v", "ts", "run_id", "org_id", "project_id", "source"}, header
        assert (header["v"], header["run_id"], header["org_id"], header["project_id"]) == (
            "1.0",
            run_id,
            "local",
            "default",
        )
        assert header["ts"].endswith("Z"), header
    states = [t for t in transitions(publishes) if t[1] not in ("ACQUIRE", "RELEASE")]
    assert states == [
        ("engine", "ENGINE_STARTED"),
        ("build", "PENDING"),
        ("build", "RUNNING"),
        ("build", "COMPLETED"),
        ("test", "PENDING"),
        ("test", "RUNNING"),
        ("test", "COMPLETED"),
        ("engine", "ENGINE_STOPPED"),
    ]
    resources = [t for t in transitions(publishes) if t[1] in ("ACQUIRE", "RELEASE")]
    # build weighs cpu 1: its slot's cpu is taken and given back.
    assert [action for _, action in resources] == ["ACQUIRE", "RELEASE"], resources
    assert all(name.startswith("cpu=1000m") for name, _ in resources), resources
    completed = next(p[2]["body"] for p in publishes if p[2]["body"].get("state") == "COMPLETED")
    assert set(completed) >= {"task_id", "task_name", "state", "duration_ms", "error", "metadata"}


def test_a_cancel_sent_through_subscribe_cancels_the_run(project: Project) -> None:
    outcome, stderr = program(project, "forever", "cancel")
    assert outcome["status"] == "cancelled", (outcome, stderr)
    assert outcome["seconds"] < 30, "cancelled, not run to its end"
    states = transitions([c for c in outcome["calls"] if c[0] == "publish"])
    assert ("long", "RUNNING") in states
    assert states[-1] == ("engine", "ENGINE_STOPPED")
    assert outcome["calls"][-1] == ["disconnect"]


@pytest.mark.parametrize("kind", ["raises", "sleeps-sync", "sleeps-async"])
def test_a_connector_that_raises_or_hangs_neither_fails_nor_slows_the_run(
    project: Project, kind: str
) -> None:
    outcome, stderr = program(project, "second", kind)
    assert outcome["value"] == 1, stderr
    # A 1 s task: the run plus the bridge's bounded waits at its end, far below 10 s a
    # publish would take per event.
    assert outcome["seconds"] < 8, (outcome["seconds"], stderr)
    assert "connector " in stderr and " failed (" in stderr, stderr
    summary = [line for line in stderr.splitlines() if "event(s) published" in line]
    assert summary, stderr
    if kind == "raises":
        assert "ConnectionError: broker is down" in stderr, "the first failure is logged"
        assert "0 event(s) published, 0 dropped" in summary[0], summary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _connect_when_listening(port: int, what: str) -> socket.socket:
    """A connection to `what` on loopback `port`, once it listens (20 s at most)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            assert time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.05)


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs nats-server")
def test_nats_connector_is_the_engines_own(project: Project) -> None:
    port = free_port()
    server = subprocess.Popen(
        ["nats-server", "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = _connect_when_listening(port, "nats-server")
        client.settimeout(30)
        # A raw core-NATS subscriber: every telemetry subject.
        client.sendall(b'CONNECT {"verbose":false}\r\nSUB cascade.telemetry.> 1\r\nPING\r\n')
        reader = client.makefile("rb")
        while reader.readline().strip() != b"PONG":
            pass
        got: list[tuple[str, dict[str, Any]]] = []

        def read() -> None:
            try:
                while True:
                    line = reader.readline()
                    if not line:
                        return
                    if line.startswith(b"PING"):
                        client.sendall(b"PONG\r\n")
                    if not line.startswith(b"MSG "):
                        continue
                    parts = line.split()
                    payload = json.loads(reader.read(int(parts[-1]) + 2)[:-2])
                    got.append((parts[1].decode(), payload))
                    if payload["body"].get("event") == "ENGINE_STOPPED":
                        return
            except OSError:
                return

        _run_while_reading(project, "nats", f"nats://127.0.0.1:{port}", read, got, "{}.events")
        client.close()
    finally:
        server.terminate()
        server.wait(10)


def _run_while_reading(
    project: Project,
    kind: str,
    url: str,
    read: Any,
    got: list[tuple[str, dict[str, Any]]],
    topic: str,
) -> None:
    """Runs the chain pipeline with the engine's own `kind` connector to `url` while
    `read` (in a thread) collects what a raw subscriber got as (topic, payload); then
    checks the lifecycle, the one topic (`topic` with the run's
    `cascade{sep}telemetry{sep}{org}{sep}{project}{sep}{run_id}` in place of `{}`) and the tasks' final states."""
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    outcome, stderr = program(project, "chain", kind, url)
    assert outcome["value"] == "built+tested", stderr
    thread.join(20)
    events = [p["body"].get("event") for _, p in got if "event" in p["body"]]
    assert events == ["ENGINE_STARTED", "ENGINE_STOPPED"], got
    run_id = got[0][1]["header"]["run_id"]
    sep = "." if kind == "nats" else "/"
    run = sep.join(["cascade", "telemetry", "local", "default", run_id])
    assert {t for t, _ in got} == {topic.format(run)}, got
    states = {(p["body"]["task_id"], p["body"]["state"]) for _, p in got if "state" in p["body"]}
    assert {("build", "COMPLETED"), ("test", "COMPLETED")} <= states, states


def _mqtt_packet(kind: int, body: bytes) -> bytes:
    """An MQTT 3.1.1 packet: the fixed header (type and flags, remaining length) and body."""
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([kind]) + bytes(encoded) + body


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _mqtt_read(sock: socket.socket) -> tuple[int, bytes]:
    """One packet: its first byte and its body."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError("the broker closed the connection")
            data += chunk
        return data

    first = exactly(1)[0]
    length, shift = 0, 0
    while True:
        byte = exactly(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return first, exactly(length)


@pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="needs mosquitto",
)
def test_mqtt_connector_is_the_engines_own(project: Project, tmp_path: Path) -> None:
    """`cs.connectors.Mqtt(url)`: the engine publishes to a real mosquitto, read here by a
    raw MQTT 3.1.1 subscriber (no client library: the bytes of the protocol)."""
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    server = subprocess.Popen(
        [broker, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        client = _connect_when_listening(port, "mosquitto")
        client.settimeout(30)
        connect = _mqtt_string("MQTT") + bytes([4, 2, 0, 60]) + _mqtt_string("cascade-test")
        client.sendall(_mqtt_packet(0x10, connect))
        assert _mqtt_read(client) == (0x20, bytes([0, 0])), "CONNACK refused"
        client.sendall(
            _mqtt_packet(0x82, b"\x00\x01" + _mqtt_string("cascade/telemetry/#") + b"\x00")
        )
        assert _mqtt_read(client)[0] == 0x90, "no SUBACK"
        got: list[tuple[str, dict[str, Any]]] = []

        def read() -> None:
            try:
                while True:
                    first, body = _mqtt_read(client)
                    if first >> 4 != 3:  # PUBLISH
                        continue
                    size = int.from_bytes(body[:2], "big")
                    start = 2 + size + (2 if first & 0x06 else 0)  # a packet id at QoS > 0
                    payload = json.loads(body[start:])
                    got.append((body[2 : 2 + size].decode(), payload))
                    if payload["body"].get("event") == "ENGINE_STOPPED":
                        return
            except (OSError, EOFError):
                return

        _run_while_reading(project, "mqtt", f"mqtt://127.0.0.1:{port}", read, got, "{}/events")
        client.close()
    finally:
        server.terminate()
        server.wait(10)
