"""The `cs.Connector` protocol and the bridge between `cascade run` and a connector object.

`cs.run(connector=obj)` listens on a Unix socket in a temporary folder before the binary
starts and passes `--telemetry unix:<path>`. The binary connects and writes each
telemetry message as one JSON line `{"topic": …, "payload": {…}}` (DESIGN §5), and reads
control commands as lines of the same shape. The bridge here:

- a reader thread takes the lines off the socket into a bounded queue (a full queue drops
  the line and counts it), so the binary is never held up by the connector;
- a publisher thread runs its own asyncio loop: `connect()` (before the run starts),
  `subscribe("cascade/control/{org}/{project}/#", callback)`, then `publish(topic,
  payload)` per queued message, each call cut after `PUBLISH_TIMEOUT` seconds; a publish
  that raises or times out is counted (the first one logged at warning level) and never
  fails the run; `disconnect()` after the binary ended (after ENGINE_STOPPED);
- the callback given to `subscribe` writes the command back to the socket, so the engine
  obeys it (pause, resume, cancel, limit).

Each method may be `async def` or a plain `def` (run in a thread of its own, so a
blocking one stalls neither the loop nor the calls after it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Protocol, runtime_checkable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("cascade")

#: Messages waiting for the connector; more are dropped and counted.
QUEUE_SIZE = 1000
#: Seconds one `publish` may take before it is given up (and counted as failed).
PUBLISH_TIMEOUT = 2.0
#: Seconds `connect` and `disconnect` may take.
CONNECT_TIMEOUT = 5.0
#: Seconds left, after the binary ended, to publish what is still queued.
FLUSH_TIMEOUT = 2.0
#: A line from the binary longer than this is not telemetry (skipped).
MAX_LINE = 1 << 20


@runtime_checkable
class Connector(Protocol):
    """Where a run's telemetry goes (DESIGN §5): any object with these four methods.

    `connect()` is called before the run starts and `disconnect()` after it ended;
    `publish(topic, payload)` once per event (`payload` the DESIGN §5 object as a dict:
    `{"header": {...}, "body": {...}}`); `subscribe(topic, callback)` once, with
    `cascade/control/{org}/{project}/#`: call `callback(topic, payload)` for each control
    command that arrives (`payload` a dict such as `{"command": "cancel", "run_id": …}`, or
    its JSON text). Each method may be `async def` or a plain `def`.
    """

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def publish(self, topic: str, payload: dict[str, Any], qos: int = 0) -> None: ...

    def subscribe(self, topic: str, callback: Callable[[str, Any], None]) -> None: ...


def control_filter() -> str:
    """The control topics the engine obeys: `cascade/control/{org}/{project}/#`, with the
    org and project the binary takes from `CASCADE_ORG_ID` / `CASCADE_PROJECT_ID`."""
    org = os.environ.get("CASCADE_ORG_ID") or "local"
    project = os.environ.get("CASCADE_PROJECT_ID") or "default"
    return f"cascade/control/{org}/{project}/#"


def _describe(obj: object) -> str:
    return type(obj).__name__


class Bridge:
    """The socket `cascade run --telemetry unix:<path>` connects to, and the threads that
    hand its messages to `connector`. `start()` before the binary starts (it returns once
    `connect()` returned or gave up), `finish()` after it exited."""

    def __init__(self, connector: object, directory: str) -> None:
        self.connector = connector
        self.name = _describe(connector)
        self.path = os.path.join(directory, "telemetry.sock")
        self.dropped = 0
        self.failed = 0
        self.published = 0
        self.connected = False
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._closed = threading.Event()
        self._reader_done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._warned = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._reader = threading.Thread(target=self._read, name="cascade-telemetry", daemon=True)
        self._publisher = threading.Thread(
            target=self._publish_loop, name="cascade-connector-loop", daemon=True
        )

    @property
    def url(self) -> str:
        return f"unix:{self.path}"

    def start(self) -> None:
        self._publisher.start()
        self._reader.start()
        # connect() runs before the run starts (bounded: a hanging one is given up).
        self._ready.wait(2 * CONNECT_TIMEOUT + 1.0)

    # -- the reader thread ------------------------------------------------------------

    def _read(self) -> None:
        try:
            self._listener.settimeout(0.2)
            conn: socket.socket | None = None
            while conn is None and not self._closed.is_set():
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
            if conn is None:
                return
            conn.settimeout(None)
            self._conn = conn
            buffer = b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._take(line)
                if len(buffer) > MAX_LINE:
                    buffer = b""
        finally:
            self._reader_done.set()
            self._nudge()

    def _take(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            topic = message["topic"]
            payload = message["payload"]
        except (ValueError, KeyError, TypeError):
            return
        if not isinstance(topic, str):
            return
        with self._lock:
            if len(self._queue) >= QUEUE_SIZE or not self.connected:
                self.dropped += 1
                return
            first = not self._queue
            self._queue.append((topic, payload))
        if first:
            self._nudge()

    def _nudge(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                loop.call_soon_threadsafe(wake.set)

    # -- control commands, from the connector ---------------------------------------

    def command(self, topic: str, payload: Any) -> None:
        """The callback given to `subscribe`: sends a control command to the engine."""
        if isinstance(payload, (bytes, bytearray)):
            payload = payload.decode("utf-8", "replace")
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError:
                log.warning("cascade: a control command that is not JSON was ignored: %r", payload)
                return
        line = json.dumps({"topic": str(topic), "payload": payload}) + "\n"
        conn = self._conn
        if conn is None:
            log.warning("cascade: a control command arrived before the run started; ignored")
            return
        with self._send_lock, contextlib.suppress(OSError):  # OSError: the run has ended
            conn.sendall(line.encode())

    # -- the publisher thread -------------------------------------------------------

    def _publish_loop(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            loop.close()

    async def _call(self, name: str, timeout: float, *args: Any) -> None:
        """`connector.<name>(*args)`: awaited if async, else in the worker thread; at most
        `timeout` seconds."""
        method = getattr(self.connector, name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if inspect.iscoroutinefunction(method):
            result: Any = method(*args)
        else:
            result = await asyncio.wait_for(_in_thread(loop, method, args), timeout)
        if inspect.isawaitable(result):
            await asyncio.wait_for(result, max(deadline - loop.time(), 0.01))

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._loop = loop
        try:
            await self._call("connect", CONNECT_TIMEOUT)
            self.connected = True
        except Exception as e:
            log.warning(
                "cascade: connector %s: connect() failed (%s); the run goes on without it",
                self.name,
                _reason(e, CONNECT_TIMEOUT),
            )
        if self.connected:
            try:
                await self._call("subscribe", CONNECT_TIMEOUT, control_filter(), self.command)
            except Exception as e:
                log.warning(
                    "cascade: connector %s: subscribe() failed (%s); control commands will not arrive",
                    self.name,
                    _reason(e, CONNECT_TIMEOUT),
                )
        self._ready.set()
        flush_deadline: float | None = None
        while True:
            if flush_deadline is None and (self._stopping or self._reader_done.is_set()):
                # The run is over: what is queued gets FLUSH_TIMEOUT seconds.
                flush_deadline = time.monotonic() + FLUSH_TIMEOUT
            with self._lock:
                item = self._queue.popleft() if self._queue else None
            if item is not None:
                if flush_deadline is not None and time.monotonic() > flush_deadline:
                    with self._lock:
                        self.dropped += 1 + len(self._queue)
                        self._queue.clear()
                    break
                await self._publish(*item)
                continue
            if self._reader_done.is_set():
                break
            self._wake.clear()
            with self._lock:
                empty = not self._queue
            if empty and not self._reader_done.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.5)
        if self.connected:
            try:
                await self._call("disconnect", CONNECT_TIMEOUT)
            except Exception as e:
                log.warning(
                    "cascade: connector %s: disconnect() failed (%s)",
                    self.name,
                    _reason(e, CONNECT_TIMEOUT),
                )

    async def _publish(self, topic: str, payload: Any) -> None:
        try:
            await self._call("publish", PUBLISH_TIMEOUT, topic, payload, 0)
            self.published += 1
        except Exception as e:
            self.failed += 1
            if not self._warned:
                self._warned = True
                log.warning(
                    "cascade: connector %s: publish(%r) failed (%s); the run goes on, "
                    "later failures are counted",
                    self.name,
                    topic,
                    _reason(e, PUBLISH_TIMEOUT),
                )

    # -- the end --------------------------------------------------------------------

    def finish(self) -> None:
        """After the binary exited: publishes what is queued (for at most
        `FLUSH_TIMEOUT` seconds), calls `disconnect()`, and reports what was lost."""
        self._closed.set()
        self._stopping = True
        conn = self._conn
        if conn is not None:
            # The binary has exited: its end is closed, so the reader sees the end soon.
            self._reader.join(1.0)
        with contextlib.suppress(OSError):
            self._listener.close()
        self._nudge()
        self._publisher.join(FLUSH_TIMEOUT + CONNECT_TIMEOUT + 1.0)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        if self.dropped or self.failed:
            log.warning(
                "cascade: connector %s: %d event(s) published, %d dropped (queue full or not "
                "connected), %d failed (raised or took over %gs)",
                self.name,
                self.published,
                self.dropped,
                self.failed,
                PUBLISH_TIMEOUT,
            )


def _in_thread(
    loop: asyncio.AbstractEventLoop, method: Callable[..., Any], args: tuple[Any, ...]
) -> asyncio.Future[Any]:
    """`method(*args)` in a thread of its own (a daemon: one that hangs past its timeout
    holds up neither the next call nor the interpreter's exit)."""
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def call() -> None:
        try:
            outcome: tuple[bool, Any] = (True, method(*args))
        except BaseException as e:
            outcome = (False, e)
        with contextlib.suppress(RuntimeError):  # the loop has ended
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=call, name="cascade-connector-call", daemon=True).start()
    return future


def _reason(e: BaseException, timeout: float) -> str:
    if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
        return f"took over {timeout:g}s"
    return f"{type(e).__name__}: {e}"
