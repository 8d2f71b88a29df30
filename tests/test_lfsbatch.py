"""Reading Git LFS batch answers: what counts as a usable link, and what sends a file back to
``/resolve/`` (pure functions; the protocol against a server is in test_real_hub/test_download)."""

from __future__ import annotations

import json

from m3leo_cli.hub.lfsbatch import (
    EXPIRY_MARGIN,
    Want,
    batch_request,
    batch_url,
    read_answer,
    repo_of,
)

A, B = "a" * 64, "b" * 64
BASE = "https://hub.example/datasets/M3LEO-miniset/europe.git/info/lfs/objects/batch"
WANTS = [Want("https://hub.example/datasets/o/n/resolve/c/x.tif", A, 10),
         Want("https://hub.example/datasets/o/n/resolve/c/y.tif", B, 20)]  # fmt: skip


def _answer(*objects: dict) -> bytes:
    return json.dumps({"transfer": "basic", "objects": list(objects)}).encode()


def _ok(oid: str, size: int, **action: object) -> dict:
    return {"oid": oid, "size": size, "actions": {"download": {"href": f"/cdn/{oid}", **action}}}


def test_request_and_url_follow_the_git_lfs_batch_api():
    doc = json.loads(batch_request(WANTS))
    assert doc["operation"] == "download" and doc["transfers"] == ["basic"]
    assert doc["objects"] == [{"oid": A, "size": 10}, {"oid": B, "size": 20}]
    assert batch_url("https://hub.example/", "o/n") == (
        "https://hub.example/datasets/o/n.git/info/lfs/objects/batch"
    )
    assert repo_of(WANTS[0].url) == "o/n" and repo_of("https://hub.example/api/x") is None


def test_links_are_joined_to_the_batch_url_and_carry_their_headers():
    links = read_answer(_answer(_ok(A, 10, header={"X-Sig": "s"}), _ok(B, 20)), WANTS, BASE, 0)
    assert links is not None
    assert links[WANTS[0].url].href == f"https://hub.example/cdn/{A}"
    assert links[WANTS[0].url].headers == {"x-sig": "s"} and links[WANTS[1].url].headers == {}
    assert links[WANTS[0].url].expires is None


def test_errors_other_sizes_and_expiring_links_are_left_to_resolve():
    links = read_answer(
        _answer(
            {"oid": A, "size": 10, "error": {"code": 404, "message": "Object does not exist"}},
            _ok(B, 21),  # not the size asked for
        ),
        WANTS,
        BASE,
        0,
    )
    assert links == {}
    soon = read_answer(_answer(_ok(A, 10, expires_in=EXPIRY_MARGIN - 1)), WANTS, BASE, 0)
    later = read_answer(_answer(_ok(A, 10, expires_in=3600)), WANTS, BASE, 100.0)
    assert soon == {} and later is not None
    assert later[WANTS[0].url].expires == 100.0 + 3600 - EXPIRY_MARGIN
    past = read_answer(_answer(_ok(A, 10, expires_at="2001-01-01T00:00:00Z")), WANTS, BASE, 0)
    assert past == {}


def test_anything_but_a_batch_document_means_the_endpoint_does_not_speak_it():
    for body in (b"<html>Not found</html>", b"[]", b'{"message": "no"}', b"{"):
        assert read_answer(body, WANTS, BASE, 0) is None
    ftp = read_answer(_answer({**_ok(A, 10), "actions": {"download": {"href": "ftp://x/y"}}}),
                      WANTS, BASE, 0)  # fmt: skip
    assert ftp == {}


def test_odd_shapes_are_no_link_not_a_crash():
    odd = [
        {"oid": A, "size": 10, "actions": []},
        {"oid": A, "size": 10, "actions": "download"},
        {"oid": A, "size": 10, "actions": {"download": {"href": "/x", "header": ["a"]}}},
        {"oid": A, "size": 10, "actions": {"download": {"href": "/x", "expires_in": "soon"}}},
        {"oid": A, "size": 10, "actions": {"download": {"href": "/x", "expires_at": "never"}}},
        {"oid": A.upper(), "size": 10, "actions": {"download": {"href": "/x"}}},
        "not an object",
    ]
    for obj in odd:
        got = read_answer(_answer(obj), WANTS, BASE, 0)
        assert got is not None and all(link.href.endswith("/x") for link in got.values())
    nan = json.dumps({"objects": [_ok(A, 10)]}).replace('"href"', '"expires_in": NaN, "href"')
    assert read_answer(nan.encode(), WANTS, BASE, 0) == {}
