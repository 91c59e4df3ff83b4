"""The local S3 store: conditional writes, listings, ranges, and a reload from its files."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from streams.local_s3 import ObjectFiles, _Server

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), ObjectFiles(tmp_path / "s3"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tansu"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _call(
    method: str, url: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_conditional_puts_create_once_and_replace_only_the_version_read(store: str) -> None:
    url = f"{store}/clusters/c/meta.json"
    status, headers, _ = _call("PUT", url, b"v1", **{"If-None-Match": "*"})
    assert status == 200
    first = headers["ETag"]
    assert _call("PUT", url, b"again", **{"If-None-Match": "*"})[0] == 412
    assert _call("PUT", url, b"v2", **{"If-Match": '"stale"'})[0] == 412
    status, headers, _ = _call("PUT", url, b"v2", **{"If-Match": first})
    assert status == 200
    assert headers["ETag"] != first
    assert _call("PUT", url, b"v3", **{"If-Match": first})[0] == 412  # the old version
    status, headers, body = _call("GET", url)
    assert (status, body) == (200, b"v2")
    assert headers["Last-Modified"]
    assert _call("GET", url, **{"If-None-Match": headers["ETag"]})[0] == 304
    assert _call("PUT", f"{store}/missing.json", b"x", **{"If-Match": first})[0] == 412


def test_get_head_range_and_delete(store: str) -> None:
    url = f"{store}/topics/t/records/00000000000000000007.batch"
    _call("PUT", url, b"0123456789")
    status, headers, body = _call("GET", url, Range="bytes=2-5")
    assert (status, body, headers["Content-Range"]) == (206, b"2345", "bytes 2-5/10")
    assert _call("GET", url, Range="bytes=-3")[2] == b"789"
    status, headers, body = _call("HEAD", url)
    assert (status, headers["Content-Length"], body) == (200, "10", b"")
    assert _call("DELETE", url)[0] == 204
    assert _call("GET", url)[0] == 404
    assert _call("HEAD", url)[0] == 404


def _list(store: str, query: str) -> tuple[list[str], list[str], str | None, list[str]]:
    status, _, body = _call("GET", f"{store}?list-type=2&{query}")
    assert status == 200
    root = ET.fromstring(body)  # noqa: S314 - our own server's reply
    keys = [e.text or "" for e in root.iter(f"{NS}Key")]
    prefixes = [e.findtext(f"{NS}Prefix") or "" for e in root.iter(f"{NS}CommonPrefixes")]
    modified = [e.text or "" for e in root.iter(f"{NS}LastModified")]
    token = root.findtext(f"{NS}NextContinuationToken")
    return keys, prefixes, token, modified


def test_listing_pages_by_prefix_and_delimiter_in_key_order(store: str) -> None:
    for key in ["p/0/b", "p/0/a", "p/1/a", "p/top", "q/x", "p/0.json"]:
        _call("PUT", f"{store}/{key}", key.encode())
    keys, prefixes, token, _ = _list(store, "prefix=p%2F")
    assert keys == ["p/0.json", "p/0/a", "p/0/b", "p/1/a", "p/top"]
    assert (prefixes, token) == ([], None)
    keys, prefixes, _, _ = _list(store, "prefix=p%2F&delimiter=%2F")
    assert keys == ["p/0.json", "p/top"]
    assert prefixes == ["p/0/", "p/1/"]
    seen: list[str] = []
    query = "prefix=p%2F&max-keys=2"
    while True:
        keys, _, token, _ = _list(store, query)
        seen += keys
        if token is None:
            break
        query = f"prefix=p%2F&max-keys=2&continuation-token={quote(token)}"
    assert seen == ["p/0.json", "p/0/a", "p/0/b", "p/1/a", "p/top"]
    assert _list(store, "start-after=p%2F1%2Fa&prefix=p%2F")[0] == ["p/top"]
    pages: list[tuple[list[str], list[str]]] = []
    query = "prefix=p%2F&delimiter=%2F&max-keys=1"
    while True:  # a common prefix is one entry, never split over pages
        keys, prefixes, token, _ = _list(store, query)
        pages.append((keys, prefixes))
        if token is None:
            break
        query = f"prefix=p%2F&delimiter=%2F&max-keys=1&continuation-token={quote(token)}"
    assert pages == [(["p/0.json"], []), ([], ["p/0/"]), ([], ["p/1/"]), (["p/top"], [])]


def test_listed_times_strictly_increase_in_write_order(store: str) -> None:
    """Tansu takes a partition's newest batch by time: ties would hide the latest."""
    for offset in range(30):
        _call("PUT", f"{store}/r/{offset:020d}.batch", b"x")
    _, _, _, modified = _list(store, "prefix=r%2F")
    assert modified == sorted(modified)
    assert len(set(modified)) == 30


def test_a_new_store_over_the_same_files_serves_the_same_objects(tmp_path: Path) -> None:
    files = ObjectFiles(tmp_path)
    meta = files.write("tansu", "a/b.json", b"{}", if_match=None, if_none_match="*")
    assert meta is not None
    files.write("tansu", "a/b", b"dir-and-file", if_match=None, if_none_match=None)
    files.write("tansu", "../escape", b"x", if_match=None, if_none_match=None)
    (tmp_path / "tansu" / "half.obj.tmp").write_bytes(b"cut short")
    again = ObjectFiles(tmp_path)
    assert again.read("tansu", "a/b.json") == (meta, b"{}")
    assert again.read("tansu", "a/b") is not None
    assert again.read("tansu", "../escape") is not None
    assert not (tmp_path.parent / "escape.obj").exists()
    assert [k for k, _ in again.list("tansu", "", "", 10)[0]] == ["../escape", "a/b", "a/b.json"]
    assert not (tmp_path / "tansu" / "half.obj.tmp").exists()
    assert again.write("tansu", "a/b.json", b"x", if_match=None, if_none_match="*") is None
