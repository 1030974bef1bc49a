"""A corpus of hostile frames, each built here from scratch (deterministically, no files)."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass

from PIL import Image

from tests.queue.scenario import small_frame

MAX_FRAME_BYTES = 10 * 1024 * 1024  # the default FRAMEWATCH_MAX_FRAME_BYTES


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    content_type: str  # the type the client claims
    # (status, error code) answered for a multipart upload and for JSON with base64.
    multipart: tuple[int, str]
    json: tuple[int, str]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG (valid CRCs) whose header declares `width`×`height` RGB pixels, with a
    few bytes of compressed data: a decompression bomb if anything trusted the header."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + png_chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare `width`×`height`."""
    data = bytearray(small_frame(11))
    at = data.index(b"\xff\xc0")  # SOF0: marker, length (2), precision (1), height, width
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_with_exif(total: int) -> bytes:
    """A small real JPEG carrying `total` bytes of Exif (APP1) segments after its SOI."""
    data = small_frame(12)
    segment_payload = 65_533 - 6
    segments = []
    for _ in range(total // segment_payload + 1):
        payload = b"Exif\x00\x00" + b"II*\x00" + b"\x00" * (segment_payload - 4)
        segments.append(b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload)
    return data[:2] + b"".join(segments) + data[2:]


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(out, "GIF")
    return out.getvalue()


def gif_js_polyglot() -> bytes:
    """A GIF whose first bytes also parse as JavaScript (`GIF89a/*…*/=alert(1)`): the classic
    image/script polyglot, dangerous if it were ever served as script."""
    data = bytearray(gif())
    data[6:8] = b"/*"  # the logical screen width becomes the start of a JS comment
    return bytes(data) + b"*/=alert(document.domain);//"


def jpeg_zip_html_polyglot(index: int = 0) -> bytes:
    """A valid JPEG with an HTML page (with a script) and a ZIP archive appended after its end
    marker: decoders ignore the tail, `unzip` and a browser sniffing for HTML would not."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("payload.html", POLYGLOT_HTML)
    return small_frame(13 + index) + POLYGLOT_HTML + archive.getvalue()


POLYGLOT_HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"

SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
       b'<script>alert(document.domain)</script><rect width="64" height="48"/></svg>')

INVALID = (400, "invalid_frame")
TOO_LARGE = (413, "frame_too_large")

CORPUS = [
    Hostile("truncated-jpeg", small_frame(7)[: len(small_frame(7)) // 2], "image/jpeg",
            INVALID, INVALID),
    # An empty upload is an invalid frame; an empty `image_base64` breaks the JSON schema.
    Hostile("zero-bytes", b"", "image/jpeg", INVALID, (422, "validation_error")),
    Hostile("png-100000x100000", png_declaring(100_000, 100_000), "image/png",
            TOO_LARGE, TOO_LARGE),
    Hostile("random-bytes", random.Random(1).randbytes(20_000), "image/jpeg", INVALID, INVALID),
    Hostile("random-after-jpeg-magic", b"\xff\xd8\xff\xe0" + random.Random(2).randbytes(20_000),
            "image/jpeg", INVALID, INVALID),
    Hostile("gif-js-polyglot", gif_js_polyglot(), "image/gif", INVALID, INVALID),
    Hostile("svg-with-script", SVG, "image/svg+xml", INVALID, INVALID),
    Hostile("gif", gif(), "image/gif", INVALID, INVALID),
    Hostile("huge-exif", jpeg_with_exif(MAX_FRAME_BYTES + 512 * 1024), "image/jpeg",
            TOO_LARGE, TOO_LARGE),
    # Past Pillow's own bomb limit, and within it but past framewatch's (sides, pixels).
    Hostile("jpeg-bomb-65000x65000", jpeg_declaring(65_000, 65_000), "image/jpeg",
            TOO_LARGE, TOO_LARGE),
    Hostile("jpeg-bomb-12000x9000", jpeg_declaring(12_000, 9_000), "image/jpeg",
            TOO_LARGE, TOO_LARGE),
    Hostile("png-9000x9000", png_declaring(9_000, 9_000), "image/png", TOO_LARGE, TOO_LARGE),
]
