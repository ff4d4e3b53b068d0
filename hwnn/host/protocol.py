"""The host link's frame format, shared by the board's hardware and the host.

Host to board, one input vector::

    0xA5, seq, payload (in_bytes), crc

Board to host, the answer::

    0x5A, seq, status, payload (out_bytes, only when status is 0), crc

``payload`` is the vector's codes packed as in a stream beat (value ``i`` in bits
``[i * width, (i + 1) * width)`` of one integer, bit patterns of the format, bipolar bit 1 =
+1), sent least significant byte first, ``ceil(features * width / 8)`` bytes. ``crc`` is the
CRC-8 (polynomial 0x07, initial value 0) of every byte after the sync byte. ``status`` is 0
(the outputs follow), 1 (the request's CRC did not match: the board dropped it) or 2 (the
request stopped short: a byte was lost; the board gave up waiting after
:data:`TIMEOUT_BYTES` byte times). A lost or corrupted byte in either direction is thus
detected, never silently misread.
"""

import numpy as np

from ..ir.formats import Format
from ..ir.packing import pack_values, unpack_values

__all__ = ["REPLY_SYNC", "REQUEST_SYNC", "STATUS", "TIMEOUT_BYTES", "crc8", "pack_vector",
           "payload_bytes", "request_frame", "unpack_vector"]

REQUEST_SYNC = 0xA5
REPLY_SYNC = 0x5A
STATUS = {0: "ok", 1: "request CRC mismatch", 2: "request incomplete (lost byte)"}
#: Byte times the board waits for the next byte of a frame before it answers status 2.
TIMEOUT_BYTES = 4


def crc8(data, crc=0) -> int:
    """CRC-8 with polynomial x^8 + x^2 + x + 1 (0x07), MSB first, of ``data`` (bytes)."""
    for byte in bytes(data):
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def payload_bytes(features, fmt: Format) -> int:
    """Bytes of one vector's payload."""
    return -(-features * fmt.width // 8)


def pack_vector(codes, fmt: Format) -> bytes:
    """The payload of one vector of ``codes``."""
    codes = np.asarray(codes)
    word = pack_values(fmt.encode(codes), fmt.width)
    return word.to_bytes(payload_bytes(len(codes), fmt), "little")


def unpack_vector(data, fmt: Format, features) -> np.ndarray:
    """The codes of a payload."""
    patterns = unpack_values(int.from_bytes(bytes(data), "little"), features, fmt.width)
    return fmt.decode(np.array(patterns, dtype=np.int64))


def request_frame(seq, codes, fmt: Format) -> bytes:
    """The request frame carrying one input vector."""
    body = bytes([seq & 0xFF]) + pack_vector(codes, fmt)
    return bytes([REQUEST_SYNC]) + body + bytes([crc8(body)])
