"""The host side of the board link: run input vectors on a board over a serial port.

:class:`BoardLink` speaks the frame format of :mod:`hwnn.host.protocol` over any byte transport
with ``write(bytes)`` and ``read(n) -> bytes`` (``read`` returning fewer bytes on its
timeout), such as a pyserial ``Serial``; :func:`open_board` opens one. A request answered
with an error status, a reply with a bad CRC or sequence number, or no reply within the
transport's timeout is retried (``retries`` times) and then raises :class:`LinkError`.
"""

import numpy as np

from ..arrays import check_codes
from ..errors import ToolError
from ..flow.designfolder import DesignFolder
from .protocol import REPLY_SYNC, STATUS, crc8, payload_bytes, request_frame, unpack_vector

__all__ = ["BoardLink", "LinkError", "open_board", "read_reply"]


class LinkError(ToolError):
    """The board did not answer a request correctly, even after retries."""


class _BadReply(Exception):
    pass


def read_reply(read, seq, out_format, out_features) -> np.ndarray:
    """Read one reply with ``read(n)``; return the output codes of request ``seq``.

    Raises ``_BadReply`` (a retryable failure) with the reason: no reply, an error status,
    a CRC or sequence mismatch.
    """
    skipped = 0
    while True:
        byte = read(1)
        if not byte:
            raise _BadReply("no reply (timeout)")
        if byte[0] == REPLY_SYNC:
            break
        skipped += 1
        if skipped > 64:
            raise _BadReply("no reply sync byte in 64 bytes")
    header = read(2)
    if len(header) < 2:
        raise _BadReply("reply cut short")
    status = header[1]
    body_length = payload_bytes(out_features, out_format) if status == 0 else 0
    rest = read(body_length + 1)
    if len(rest) < body_length + 1:
        raise _BadReply("reply cut short")
    if crc8(header + rest[:-1]) != rest[-1]:
        raise _BadReply("reply CRC mismatch")
    if status != 0:
        raise _BadReply(f"board: {STATUS.get(status, f'status {status}')}")
    if header[0] != seq & 0xFF:
        raise _BadReply(f"reply to request {header[0]}, expected {seq & 0xFF}")
    return unpack_vector(rest[:-1], out_format, out_features)


class BoardLink:
    """Input vectors to a board running ``design`` (a design folder's path, or a
    :class:`~hwnn.flow.designfolder.DesignFolder` such as a :class:`~hwnn.flow.generate.Design`),
    outputs back, over ``transport``."""

    def __init__(self, transport, design, *, retries=3):
        self.transport = transport
        self.design = design if isinstance(design, DesignFolder) else DesignFolder(design)
        self.retries = retries
        self.retried = 0               # requests sent again, over the link's life
        self._seq = 0

    def infer(self, codes) -> np.ndarray:
        """Output codes for one input vector of codes."""
        network = self.design.network
        reason = None
        for _ in range(self.retries + 1):
            seq, self._seq = self._seq, (self._seq + 1) & 0xFF
            self.transport.write(request_frame(seq, codes, network.input.format))
            try:
                return read_reply(self.transport.read, seq, network.output.format,
                                  network.out_features)
            except _BadReply as error:
                reason = error
                self.retried += 1
        raise LinkError(f"The board gave no valid answer after {self.retries + 1} tries: "
                        f"{reason}")

    def run(self, codes, progress=None) -> np.ndarray:
        """Output codes for every input vector (rows of ``codes``); ``progress(done)`` is
        called after each (:class:`hwnn.progress.Progress`). ValueError, before anything is
        sent, unless ``codes`` are input vectors of the design (shape, integer codes in its
        input format)."""
        codes = check_codes(self.design.network, codes)
        outputs = []
        for row in codes:
            outputs.append(self.infer(row))
            if progress is not None:
                progress(len(outputs))
        return np.array(outputs)


def open_board(design, port, *, baud=115200, timeout=1.0, retries=3) -> BoardLink:
    """A :class:`BoardLink` over the serial ``port`` (pyserial)."""
    from ..tools.toolchain import require
    require("a board's serial port", "serial")
    import serial
    try:
        transport = serial.Serial(port, baud, timeout=timeout)
    except serial.SerialException as error:
        raise ToolError(f"Cannot open serial port {port!r}: {error}") from None
    return BoardLink(transport, design, retries=retries)
