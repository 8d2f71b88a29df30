"""Answer framing as a property (issue 23, item 7): whatever way a server frames a body --
a length, chunks of any sizes with extensions and trailers, or the close -- and however the
network cuts it, the engine hands over exactly that body; and whatever bytes a server sends
instead of an answer, the engine raises one of its own errors, never another exception.
Bounded: a few dozen examples each, every one against a real loopback socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import Scripted, scripted

from m3leo_cli.config import load_settings
from m3leo_cli.errors import ConfigError
from m3leo_cli.hub.wire import TransportError, Wire

EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def wire() -> Iterator[Wire]:
    w = Wire(load_settings({"timeout": 5, "answer_budget": 5}, env={}))
    yield w
    w.close()


@st.composite
def framed(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(an answer's bytes, the body it carries)."""
    body = draw(st.binary(max_size=3000))
    kind = draw(st.sampled_from(["length", "chunked", "close"]))
    head = b"HTTP/1.1 200 OK\r\nX-Case: " + kind.encode() + b"\r\n"
    if kind == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body, body
    if kind == "close":
        return head + b"Connection: close\r\n\r\n" + body, body
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    out = head + b"Transfer-Encoding: chunked\r\n\r\n"
    start = 0
    for end in [*cuts, len(body)]:
        if end > start:
            ext = draw(st.sampled_from([b"", b";a=b", b';name="v"']))
            size = b"%x" % (end - start)
            if draw(st.booleans()):
                size = size.upper()
            out += size + ext + b"\r\n" + body[start:end] + b"\r\n"
            start = end
    out += b"0\r\n" + draw(st.sampled_from([b"", b"X-T: 1\r\n"])) + b"\r\n"
    return out, body


@EXAMPLES
@given(case=framed(), piece=st.integers(1, 700))
def test_every_framing_and_every_cut_gives_the_body(wire: Wire, case, piece: int) -> None:  # type: ignore[no-untyped-def]
    answer, body = case
    with scripted(Scripted([answer], piece=piece, close_after={0})) as srv:
        with wire.send("GET", srv.url, {}) as resp:
            assert resp.read(1 << 20) == body


@EXAMPLES
@given(
    junk=st.one_of(
        st.binary(max_size=400),
        st.builds(
            lambda a, b: b"HTTP/1.1 " + a + b"\r\n" + b + b"\r\n\r\n",
            st.binary(max_size=40),
            st.binary(max_size=200),
        ),
    )
)
def test_any_bytes_end_in_an_answer_or_one_of_the_engines_errors(wire: Wire, junk: bytes) -> None:
    with scripted(Scripted([junk], close_after={0})) as srv:
        try:
            with wire.send("GET", srv.url, {}) as resp:
                resp.read(1 << 20)
        except (TransportError, ConfigError):
            pass  # typed, with the URL: what a caller can count as a failure
