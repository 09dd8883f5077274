"""Reading uploads: the request body held in memory up to the size limit, multipart parsed in memory (python-multipart's
parser, no spooling to disk), file names checked to be plain names. Nothing from a request becomes a path: a file
name only labels the result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header

from plastispoof.serve.errors import ServiceError

FILE_FIELD = "file"  # the form field of POST /v1/score (and, repeated, of /v1/score/batch)
RAW_NAME = "body"  # the name a raw (non-multipart) upload is reported under


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


@dataclass
class Part:
    """One part of a multipart body."""

    field: str | None = None
    filename: str | None = None
    content_type: str | None = None
    data: bytearray = dataclasses.field(default_factory=bytearray)


class UploadName(str):
    """A file's name as the client gave it (a label only), carrying its bytes for the decoder."""

    data: bytes

    @classmethod
    def of(cls, name: str, data: bytes) -> "UploadName":
        upload = cls(name)
        upload.data = data
        return upload


async def read_body(request, max_bytes: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``max_bytes`` (from Content-Length,
    else while it arrives). :class:`ClientGone` when the client leaves mid-upload."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise _too_large(len(body), max_bytes)
    except ClientDisconnect:
        raise ClientGone() from None
    return bytes(body)


def _too_large(size: int, max_bytes: int) -> ServiceError:
    return ServiceError(413, f"the upload is over the size limit: {size:,} bytes > {max_bytes:,} bytes "
                             f"({max_bytes / 2**20:g} MB, --max-upload-mb)")


def uploads(body: bytes, content_type: str | None) -> list[UploadName]:
    """The audio files of a request: each ``file`` part of a multipart form, or the raw body itself (any audio
    Content-Type). 422 for an empty body, a form without a ``file`` field or a file name with path parts; 400
    for a malformed multipart body."""
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        if not body:
            raise ServiceError(422, "the request body is empty: send audio bytes (e.g. Content-Type: audio/flac) "
                                    f"or a multipart form with a {FILE_FIELD!r} field")
        return [UploadName.of(RAW_NAME, body)]
    boundary = options.get(b"boundary")
    if not boundary:
        raise ServiceError(400, "malformed multipart body: the Content-Type names no boundary")
    parts = parse_multipart(body, boundary)
    files = [part for part in parts if part.field == FILE_FIELD]
    if not files:
        seen = ", ".join(repr(part.field) for part in parts) or "none"
        raise ServiceError(422, f"the form has no {FILE_FIELD!r} field (fields sent: {seen}); send the audio "
                                f"as {FILE_FIELD}=@clip.flac")
    return [UploadName.of(checked_name(part.filename), bytes(part.data)) for part in files]


def checked_name(filename: str | None) -> str:
    """A client's file name when it is a plain name (no directory parts, no ``..``, no NUL); 422 otherwise."""
    if not filename:
        return "upload"
    if "/" in filename or "\\" in filename or "\x00" in filename or filename in (".", ".."):
        raise ServiceError(422, f"the file name {filename[:80]!r} has path parts; send a plain file name "
                                "(it only labels the result)")
    return filename


def parse_multipart(body: bytes, boundary: bytes) -> list[Part]:
    """The parts of a ``multipart/form-data`` body, all in memory (400 when it is malformed or truncated)."""
    from python_multipart.exceptions import MultipartParseError

    parts: list[Part] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}
    headers: dict[str, str] = {}
    ended = []

    def on_part_begin() -> None:
        parts.append(Part())
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        headers[header["field"].decode("latin-1").lower()] = header["value"].decode("utf-8", "replace")
        header["field"], header["value"] = bytearray(), bytearray()

    def on_headers_finished() -> None:
        disposition, options = parse_options_header(headers.get("content-disposition", ""))
        if disposition != b"form-data":
            raise ServiceError(400, "malformed multipart body: a part has no Content-Disposition: form-data")
        part = parts[-1]
        part.field = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        part.filename = None if filename is None else filename.decode("utf-8", "replace")
        part.content_type = headers.get("content-type")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end,
                 "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
                 "on_end": lambda: ended.append(True)}
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as err:
        raise ServiceError(400, f"malformed multipart body: {err}") from None
    if not ended:
        raise ServiceError(400, "malformed multipart body: it ends before its closing boundary")
    return parts
