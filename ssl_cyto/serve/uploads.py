"""Uploaded images: read in memory under a byte cap, sized from the header, then decoded.

An upload is never written to disk or to a log. The request body is read chunk by chunk and
refused as soon as it passes the byte limit (``--max-bytes``); the multipart form is parsed in
memory with python-multipart (Starlette's own form parser would spool parts over 1 MiB to a
temporary file). The file's type is decided from its content (magic bytes, then the decoder), never
from the name the client gave, and its pixel count is read from the header *before* any pixel is
decoded (``--max-pixels``): Pillow opens images lazily, so ``Image.open(...).size`` reads only the
header; TIFFs that Pillow cannot open (e.g. 16-bit RGB) are sized by tifffile from their first IFD.
Then :func:`ssl_cyto.data.images.open_rgb` decodes exactly as ``ssl-cyto query`` does for a file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass

import tifffile
from PIL import Image, UnidentifiedImageError
from python_multipart.multipart import MultipartParser, parse_options_header

from ssl_cyto.data.images import ImageDecodeError, open_rgb
from ssl_cyto.serve.errors import ApiError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "Limits",
    "Part",
    "decode_upload",
    "image_size",
    "parse_multipart",
    "read_body",
    "sniff_format",
]

DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # a 400x400 RGBA TIFF is ~640 kB; 20 MB leaves room for slides crops
DEFAULT_MAX_PIXELS = 25_000_000  # 5000 x 5000; cells are 250-400 px a side
MULTIPART_SLACK = 64 * 1024  # boundaries, part headers and the small form fields around the file
FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP")
_EXTENSION = {"JPEG": "jpg", "PNG": "png", "TIFF": "tiff", "BMP": "bmp", "WEBP": "webp"}


@dataclass(frozen=True)
class Limits:
    """Upload limits: bytes of the image file and decoded pixels (width x height)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class Part:
    """One part of a multipart form, held in memory."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def sniff_format(data: bytes) -> str | None:
    """The image format from the first bytes (``"JPEG"``, ``"PNG"``, ...), or None if none matches."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _tiff_size(data: bytes) -> tuple[int, int]:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        return int(page.imagewidth), int(page.imagelength)


def image_size(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` read from the header only; no pixel is decoded.

    Raises:
        ApiError: 400 empty or unreadable header, 415 not an image of a supported format.
    """
    if not data:
        raise ApiError(400, "empty_upload", "the uploaded file is empty (0 bytes); send a cell image")
    fmt = sniff_format(data)
    if fmt is None:
        raise ApiError(
            415,
            "not_an_image",
            "the upload is not an image of a supported format (" + ", ".join(FORMATS) + "); "
            "its content, not its name, decides the type",
        )
    try:
        # the format's own header parser, without Image.open's decompression-bomb check: a huge header
        # gets the --max-pixels answer of decode_upload, not Pillow's text
        Image.init()
        with Image.OPEN[fmt][0](io.BytesIO(data), f"upload.{_EXTENSION[fmt]}") as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        if fmt != "TIFF":
            raise ApiError(
                400,
                "undecodable_image",
                f"the upload starts like a {fmt} file but its header is unreadable: {exc}",
            ) from exc
        try:
            width, height = _tiff_size(data)
        except Exception as tiff_exc:  # noqa: BLE001 - tifffile raises many kinds; all mean "bad TIFF"
            raise ApiError(
                400,
                "undecodable_image",
                f"the upload starts like a TIFF file but its header is unreadable: {tiff_exc}",
            ) from exc
    return fmt, int(width), int(height)


def _too_many(fmt: str, width: int, height: int, limits: Limits) -> str:
    cap = limits.max_pixels
    if Image.MAX_IMAGE_PIXELS:  # Pillow refuses to decode over twice its own cap, whatever --max-pixels says
        cap = min(cap, 2 * int(Image.MAX_IMAGE_PIXELS))
    return (
        f"the {fmt} header declares {width}x{height} = {width * height} pixels; "
        f"the limit is {cap} (--max-pixels of `ssl-cyto serve`); crop the cell first"
    )


def decode_upload(data: bytes, limits: Limits) -> tuple[Image.Image, str]:
    """Check the limits on the header, then decode to 8-bit RGB as ``ssl-cyto query`` would.

    Args:
        data: the uploaded file's bytes.
        limits: byte and pixel caps.

    Returns:
        ``(RGB image, format)``.

    Raises:
        ApiError: 413 over a limit, 415 not an image, 400 empty, truncated or corrupt.
    """
    if len(data) > limits.max_bytes:
        raise ApiError(
            413,
            "too_many_bytes",
            f"the upload has {len(data)} bytes; the limit is {limits.max_bytes} (--max-bytes)",
        )
    fmt, width, height = image_size(data)
    if width < 1 or height < 1:
        raise ApiError(
            400, "undecodable_image", f"the {fmt} header declares an empty image ({width}x{height})"
        )
    if width * height > limits.max_pixels:
        raise ApiError(413, "too_many_pixels", _too_many(fmt, width, height, limits))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # the name only steers open_rgb's TIFF fallback; it comes from the content, not the client
            img = open_rgb(data, name=f"upload.{_EXTENSION[fmt]}")
    except ImageDecodeError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise ApiError(
            400, "undecodable_image", f"the upload looks like a {fmt} file but cannot be decoded ({reason})"
        ) from exc
    except Image.DecompressionBombError as exc:  # only with a --max-pixels above Pillow's own cap
        raise ApiError(413, "too_many_pixels", _too_many(fmt, width, height, limits)) from exc
    return img, fmt


async def read_body(stream: AsyncIterator[bytes], content_length: str | None, cap: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``cap`` bytes (nothing is spooled)."""
    too_big = ApiError(
        413,
        "too_many_bytes",
        f"the request body is over {cap} bytes (the image limit --max-bytes plus the form)",
    )
    if content_length is not None:
        try:
            if int(content_length) > cap:
                raise too_big
        except ValueError:
            raise ApiError(400, "bad_request", "the Content-Length header is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > cap:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def body_cap(limits: Limits) -> int:
    """The most bytes a multipart request may have: the image limit plus room for the form."""
    return limits.max_bytes + MULTIPART_SLACK


def parse_multipart(body: bytes, content_type: str | None) -> dict[str, Part]:
    """Parse a ``multipart/form-data`` body in memory; the first part of each name wins.

    Raises:
        ApiError: 415 not multipart, 400 malformed.
    """
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError(
            415,
            "not_multipart",
            "send the image as multipart/form-data with a file field named 'image' "
            "(curl -F image=@cell.tiff ...)",
        )
    parts: list[Part] = []
    headers: dict[bytes, bytes] = {}
    field: list[bytes] = [b"", b""]
    data: list[bytes] = []

    def on_header_field(buf: bytes, start: int, end: int) -> None:
        field[0] += buf[start:end]

    def on_header_value(buf: bytes, start: int, end: int) -> None:
        field[1] += buf[start:end]

    def on_header_end() -> None:
        headers[field[0].strip().lower()] = field[1].strip()
        field[0], field[1] = b"", b""

    def on_part_data(buf: bytes, start: int, end: int) -> None:
        data.append(buf[start:end])

    def on_part_end() -> None:
        _, disp = parse_options_header(headers.get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        ctype_part = headers.get(b"content-type")
        parts.append(
            Part(
                name,
                None if filename is None else filename.decode("utf-8", "replace"),
                None if ctype_part is None else ctype_part.decode("latin-1"),
                b"".join(data),
            )
        )
        headers.clear()
        data.clear()

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several kinds for bad forms
        raise ApiError(400, "bad_multipart", f"the multipart form cannot be parsed: {exc}") from exc
    out: dict[str, Part] = {}
    for part in parts:
        out.setdefault(part.name, part)
    return out
