"""The engine's own connectors, for `cs.run(connector=...)`: `Mqtt(url)` and `Nats(url)`.

They hold no Python client: `cs.run` hands their URL to the `cascade` binary as
`--telemetry URL`, and the engine publishes every event of DESIGN §5 to that broker and
obeys the control commands that arrive on it, exactly as `cascade run --telemetry` does.
"""

from __future__ import annotations

__all__ = ["Mqtt", "Nats"]


class _Broker:
    scheme = ""

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(
                f"{type(self).__name__}(url) takes the broker's URL as a string "
                f"({self.scheme}://host:port), found {type(url).__name__}"
            )
        scheme, sep, rest = url.partition("://")
        if sep != "://" or scheme.lower() != self.scheme or not rest.strip("/"):
            raise ValueError(
                f"{type(self).__name__} expects a URL {self.scheme}://host[:port], found {url!r}"
            )
        if "@" in rest:
            raise ValueError(
                f"{type(self).__name__}: credentials in the URL are not supported ({url!r}); "
                "give host and port only"
            )
        self.url = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.url == self.url

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.url))


class Mqtt(_Broker):
    """The engine publishes to the MQTT broker at `mqtt://host:port` (default port 1883)."""

    scheme = "mqtt"
    __slots__ = ()


class Nats(_Broker):
    """The engine publishes to the NATS server at `nats://host:port` (default port 4222);
    subjects are the DESIGN §5 topics with dots for slashes."""

    scheme = "nats"
    __slots__ = ()
