"""Multipart uploads whose parts name their file with RFC 5987's `filename*=UTF-8''...` (RFC 6266 §4.3).

Clients use it for names that are not ASCII, some of them without a plain `filename=` beside it. python-multipart
ignores `filename*` (RFC 7578 §4.2 says form-data should not need it), so Starlette would take such a part for a
plain form field and the upload would fail as "not a file". `UploadRoute` parses uploads with a parser that turns
`filename*` into the plain `filename` Starlette reads; when both are present, `filename*` wins, as RFC 6266 asks.
The parser also refuses, with a 400 naming the field, a field name, file name or field value whose bytes are not
text in the form's charset (UTF-8 unless the request says otherwise), where Starlette would fall back to Latin-1
(`pub\xff` read as `pubÿ`) and Python's RFC 2231 decoding to U+FFFD (`filename*=UTF-8''a%ED%A0%BDb.md`): every
text field of every endpoint is validated alike (rag/server/schemas.py `Text` for JSON).
This leans on two internals of Starlette's multipart parser (`_current_part`, `_charset`) and on `Request._get_form`;
tests/test_server_input.py uploads such parts through a real server, so a Starlette change that breaks it fails there.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import aclosing
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser


def with_plain_filename(disposition: bytes, charset: str) -> bytes:
    """A part's Content-Disposition value with its RFC 5987/2231 `filename*` (if any) decoded into a quoted plain
    `filename`, encoded in the form's `charset`; the other parameters are kept. MultiPartException when the
    percent-decoded bytes are not text in the charset they declare, or the name cannot be written in `charset`."""
    if b"filename*" not in disposition.lower():
        return disposition
    header = Message()
    header["content-disposition"] = disposition.decode("latin-1")  # how python-multipart reads header bytes too
    if not (found := header.get_params(header="content-disposition")):
        return disposition
    kind, *params = found
    latest = {key.lower(): value for key, value in params}  # decoded RFC 2231 values come last: `filename*` wins
    try:
        return b"; ".join(
            [kind[0].encode("latin-1")]
            + [key.encode("latin-1") + b"=" + _quoted(_raw(value, charset)) for key, value in latest.items()]
        )
    except UnicodeEncodeError:
        raise MultiPartException(f"a part's file name cannot be written in the form's charset {charset}") from None
    except UnicodeDecodeError as exc:
        raise MultiPartException(
            f"a part's file name (`filename*`) is not valid {exc.encoding} ({_bad_byte(exc)} after percent-decoding); "
            "send the name's bytes in the charset it declares"
        ) from None


def _raw(value: str | tuple[str, str, str], charset: str) -> bytes:
    """A parameter as the bytes Starlette decodes: RFC 2231 values in the form's charset, plain ones as they came."""
    if isinstance(value, tuple):
        return collapse_rfc2231_value(value, errors="strict").encode(charset)
    return value.encode("latin-1")


def _quoted(value: bytes) -> bytes:
    """`value` as an HTTP quoted-string (RFC 9110 §5.6.4): in double quotes, `"` and `\\` escaped."""
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def checked_text(raw: bytes | bytearray, charset: str, *, what: str) -> None:
    """MultiPartException naming `what` (e.g. "form field 'labels'") when `raw` is not text in `charset` (a codec
    name Python knows: Starlette has already replaced an unknown one by latin-1)."""
    try:
        raw.decode(charset)
    except UnicodeDecodeError as exc:
        raise MultiPartException(
            f"{what} is not valid {exc.encoding} text ({_bad_byte(exc)}); send whole characters in the form's charset"
        ) from None


def _bad_byte(exc: UnicodeDecodeError) -> str:
    return f"byte 0x{exc.object[exc.start]:02X} at offset {exc.start}"


class _ExtendedNameParser(MultiPartParser):
    """Starlette's parser, with each part's `filename*` turned into `filename` before Starlette reads it, and each
    part's name, file name and (for a field) value refused unless they are text in the form's charset."""

    def on_headers_finished(self) -> None:
        part = self._current_part
        if part.content_disposition:
            part.content_disposition = with_plain_filename(part.content_disposition, self._charset)
            _, options = parse_options_header(part.content_disposition)
            checked_text(options.get(b"name", b""), self._charset, what="a part's field name (`name`)")
            checked_text(options.get(b"filename", b""), self._charset, what="a part's file name (`filename`)")
        super().on_headers_finished()

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            checked_text(part.data, self._charset, what=f"form field {part.field_name!r}")
        super().on_part_end()


class _UploadRequest(Request):
    """A request whose multipart form is parsed by `_ExtendedNameParser`."""

    async def _get_form(
        self, *, max_files: int | float = 1000, max_fields: int | float = 1000, max_part_size: int = 1024 * 1024
    ) -> FormData:
        content_type, _ = parse_options_header(self.headers.get("content-type"))
        if self._form is None and content_type == b"multipart/form-data":
            try:
                async with aclosing(self.stream()) as stream:
                    self._form = await _ExtendedNameParser(
                        self.headers,
                        stream,
                        max_files=max_files,
                        max_fields=max_fields,
                        max_part_size=max_part_size,
                    ).parse()
            except MultiPartException as exc:
                raise HTTPException(400, exc.message) from None
        return await super()._get_form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)


class UploadRoute(APIRoute):
    """A route whose multipart body is parsed with RFC 5987 `filename*` support (route_class of an APIRouter)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, called with the request wrapped as an `_UploadRequest`."""
        handler = super().get_route_handler()

        async def with_extended_names(request: Request) -> Response:
            return await handler(_UploadRequest(request.scope, request.receive))

        return with_extended_names
