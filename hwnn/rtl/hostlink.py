"""The board side of the host link: UART frames in, accelerator streams, UART frames out.

:class:`HostLink` receives a request frame (:mod:`hwnn.host.protocol`), checks its CRC, feeds the
vector to the accelerator beat by beat and sends the reply frame, its payload taken from the
accelerator's output beats as the UART sends it. The request's payload is kept in a memory of
accelerator beats (assembled a bit per cycle as the bytes arrive, much faster than the UART
delivers them), so a large input such as an image costs a block RAM, not a register per bit;
the reply's bytes are assembled a bit per cycle from one output beat at a time (a byte takes
the UART at least 10 cycles), so a large output costs a beat's register, not the vector's.
A frame whose CRC does not match is answered with status 1, a frame that stops short (a lost
byte) with status 2 after :data:`~hwnn.host.protocol.TIMEOUT_BYTES` byte times of silence; then
the link hunts for the next sync byte. :class:`BoardTop` is an accelerator behind a link: the
design a board runs, with just ``rx`` and ``tx``.
"""

from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..host.protocol import REPLY_SYNC, REQUEST_SYNC, TIMEOUT_BYTES, crc8, payload_bytes
from ..ir.formats import Format
from .engine import load_port
from .crossing import StreamCrossing
from .flash import FlashReader
from .layouts import Beat
from .uart import UartRx, UartTx

__all__ = ["BoardTop", "HostLink", "crc8_next"]


def crc8_next(crc, byte):
    """The CRC-8 (polynomial 0x07) after ``byte``, as combinational logic: the CRC is linear
    in ``crc ^ byte``, so each output bit is the XOR of the input bits whose unit vectors set
    it (found with :func:`hwnn.host.protocol.crc8`)."""
    value = Value.cast(crc) ^ byte
    columns = [crc8(bytes([1 << bit])) for bit in range(8)]
    return Cat(*(Cat(*(value[bit] for bit in range(8) if columns[bit] >> out & 1)).xor()
                 for out in range(8)))


class HostLink(wiring.Component):
    """Frames on ``rx``/``tx`` to and from an accelerator's streams.

    Parameters
    ----------
    in_count, in_format, in_features : the accelerator's input beats (values per beat, code
        format, values per vector).
    out_count, out_format, out_features : its output beats.
    divisor : clock cycles per UART bit.

    Members
    -------
    rx : ``In(1)``; tx : ``Out(1)``
    o_stream : ``Out(stream.Signature(Beat(in_count, in width)))``, to the accelerator
    i_stream : ``In(stream.Signature(Beat(out_count, out width)))``, from it
    """

    def __init__(self, *, in_count, in_format: Format, in_features, out_count,
                 out_format: Format, out_features, divisor):
        self.in_count, self.in_format, self.in_features = in_count, in_format, in_features
        self.out_count, self.out_format = out_count, out_format
        self.out_features, self.divisor = out_features, divisor
        self.rx_unit, self.tx_unit = UartRx(divisor), UartTx(divisor)
        super().__init__({
            "rx":       In(1, init=1),
            "tx":       Out(1, init=1),
            "o_stream": Out(stream.Signature(Beat(in_count, in_format.width))),
            "i_stream": In(stream.Signature(Beat(out_count, out_format.width))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx, m.submodules.tx = rx, tx = self.rx_unit, self.tx_unit
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        # The received byte a cycle later, with its comparison with the sync byte (short paths
        # from the receiver to the enables; a byte takes at least 10 cycles).
        byte, got, is_sync = Signal(8), Signal(), Signal()
        m.d.sync += [byte.eq(rx.o_byte.payload), got.eq(rx.o_byte.valid),
                     is_sync.eq(rx.o_byte.valid & (rx.o_byte.payload == REQUEST_SYNC))]
        # Whether the byte matches the CRC of the bytes before it (the CRC takes a byte in
        # the cycle ``got`` is set), compared as it arrives: no comparison before the state.
        crc_match = Signal()

        in_bytes = payload_bytes(self.in_features, self.in_format)
        out_bytes = payload_bytes(self.out_features, self.out_format)
        in_beat_bits = self.in_count * self.in_format.width
        in_beats = self.in_features // self.in_count
        out_beat_bits = self.out_count * self.out_format.width
        out_beats = self.out_features // self.out_count

        seq, status, crc = Signal(8), Signal(2), Signal(8)
        m.d.sync += crc_match.eq(rx.o_byte.payload == crc)
        m.submodules.beats = beats = memory.Memory(shape=in_beat_bits, depth=in_beats, init=[])
        write, read = beats.write_port(), beats.read_port()
        # The reply's payload: an output beat (``beat_left`` of its bits still to send, least
        # significant first) shifted a bit per cycle into the byte being assembled
        # (``byte_fill`` bits so far, past the last beat's end zeros).
        # Registered flags (no counter compare on the way to the enables): the beat is used up,
        # the byte is full, every beat has been taken.
        out_beat, beat_left = Signal(out_beat_bits), Signal(range(out_beat_bits + 1))
        out_byte, byte_fill = Signal(8), Signal(range(8))
        beats_taken = Signal(range(out_beats + 1))
        beat_empty, byte_full, all_taken = Signal(), Signal(), Signal()
        # Ready for an output beat: a register, set a cycle after the link waits for one (it
        # waits until one comes), so that no decoding of the link's state reaches the
        # accelerator's output FIFO.
        want = Signal()
        m.d.comb += self.i_stream.ready.eq(want)
        m.d.sync += want.eq(0)
        # A count per phase (simple enables): request bytes, beats fed, reply bytes; and
        # registered flags for the request's and the reply's last payload byte.
        bytes_in = Signal(range(in_bytes + 1))
        beats_fed = Signal(range(in_beats + 1))
        bytes_out = Signal(range(out_bytes + 1))
        last_in, last_out = Signal(), Signal()
        limit = TIMEOUT_BYTES * 10 * self.divisor
        # Cycles since the last byte: counted whatever the state (cleared by every byte, a
        # sync byte included), so that no decoding of the state reaches the count's enable;
        # ``timed_out`` marks the cycle it reaches ``limit``, which the states that wait for a
        # frame's next byte act on.
        silence = Signal(range(limit + 1))
        timed_out = Signal()
        with m.If(got):
            m.d.sync += [silence.eq(0), timed_out.eq(0)]
        with m.Else():
            m.d.sync += [silence.eq(silence + 1), timed_out.eq(silence == limit - 1)]

        # FEED offers the beats, in registers of its own (no decoding of the link's state on
        # the way to the beat memory's address): ``feeding`` while in FEED, the count of beats
        # taken (0 before FEED), the next count and whether the count is the last beat. The
        # read port shows the beat at the address of the cycle before: the count, or the next
        # one once a beat is taken.
        feeding, feed_last = Signal(), Signal(init=in_beats == 1)
        beats_next = Signal(range(in_beats + 2), init=1)
        taken = feeding & self.o_stream.ready
        m.d.comb += [
            read.addr.eq(Mux(taken, beats_next, beats_fed)),
            self.o_stream.valid.eq(feeding),
            self.o_stream.payload.data.eq(read.data),
            self.o_stream.payload.last.eq(feed_last),
        ]
        with m.If(taken):
            with m.If(feed_last):
                m.d.sync += [beats_fed.eq(0), beats_next.eq(1), feed_last.eq(in_beats == 1)]
            with m.Else():
                m.d.sync += [beats_fed.eq(beats_next), beats_next.eq(beats_next + 1),
                             feed_last.eq(beats_next == in_beats - 1)]

        # Each payload byte is shifted, a bit per cycle, into the beat being assembled; a full
        # beat is written at the next address. Bits past the vector (the last byte's padding)
        # are dropped. A byte takes 10 bit times (at least 10 cycles), longer than its 8 shifts.
        pending, pending_bits = Signal(8), Signal(range(9))
        beat = Signal(in_beat_bits)
        beat_fill = Signal(range(max(in_beat_bits, 2)))
        beat_address = Signal(range(in_beats + 1))
        shifted = Cat(beat[1:], pending[0]) if in_beat_bits > 1 else pending[0]
        with m.If((pending_bits != 0) & (beat_address != in_beats)):
            m.d.sync += [pending.eq(pending >> 1), pending_bits.eq(pending_bits - 1),
                         beat.eq(shifted)]
            with m.If(beat_fill == in_beat_bits - 1):
                m.d.comb += [write.en.eq(1), write.addr.eq(beat_address), write.data.eq(shifted)]
                m.d.sync += [beat_fill.eq(0), beat_address.eq(beat_address + 1)]
            with m.Else():
                m.d.sync += beat_fill.eq(beat_fill + 1)

        # The byte to send waits for the transmitter in registers of its own (``tx_full``
        # while it waits): no decoding of the link's state reaches the transmitter.
        tx_byte, tx_full = Signal(8), Signal()
        m.d.comb += [tx.i_byte.payload.eq(tx_byte), tx.i_byte.valid.eq(tx_full)]
        with m.If(tx.i_byte.ready):
            m.d.sync += tx_full.eq(0)

        def send(value, next_state, *, checked=True):
            """Hand ``value`` to the transmitter once the byte before has gone; go on."""
            with m.If(~tx_full):
                m.d.sync += [tx_byte.eq(value), tx_full.eq(1)]
                if checked:
                    m.d.sync += crc.eq(crc8_next(crc, value))
                m.next = next_state

        with m.FSM():
            with m.State("HUNT"):
                with m.If(is_sync):
                    m.d.sync += [crc.eq(0), bytes_in.eq(0), last_in.eq(in_bytes == 1),
                                 pending_bits.eq(0), beat_fill.eq(0), beat_address.eq(0)]
                    m.next = "SEQ"
            for state in ("SEQ", "PAYLOAD", "CHECK"):
                with m.State(state):
                    with m.If(got):
                        m.d.sync += crc.eq(crc8_next(crc, byte))
                    with m.Elif(timed_out):
                        m.d.sync += status.eq(2)
                        m.next = "REPLY_SYNC"
                    if state == "SEQ":
                        with m.If(got):
                            m.d.sync += seq.eq(byte)
                            m.next = "PAYLOAD"
                    elif state == "PAYLOAD":
                        with m.If(got):
                            m.d.sync += [pending.eq(byte), pending_bits.eq(8),
                                         bytes_in.eq(bytes_in + 1),
                                         last_in.eq(bytes_in == in_bytes - 2)]
                            with m.If(last_in):
                                m.next = "CHECK"
                    else:
                        with m.If(got):
                            with m.If(crc_match):
                                m.d.sync += [status.eq(0), feeding.eq(1)]
                                m.next = "FEED"
                            with m.Else():
                                m.d.sync += status.eq(1)
                                m.next = "REPLY_SYNC"
            with m.State("FEED"):
                with m.If(taken & feed_last):
                    m.d.sync += feeding.eq(0)
                    m.next = "REPLY_SYNC"
            with m.State("REPLY_SYNC"):
                m.d.sync += [crc.eq(0), bytes_out.eq(0), last_out.eq(out_bytes == 1),
                             beat_empty.eq(1), byte_fill.eq(0),
                             byte_full.eq(0), beats_taken.eq(0), all_taken.eq(0)]
                send(REPLY_SYNC, "REPLY_SEQ", checked=False)
            with m.State("REPLY_SEQ"):
                send(seq, "REPLY_STATUS")
            with m.State("REPLY_STATUS"):
                send(status, "REPLY_PAYLOAD")
                with m.If(~tx_full & (status != 0)):
                    m.next = "REPLY_CRC"
            with m.State("REPLY_PAYLOAD"):
                shift = Signal()            # a bit into the byte: the beat's next, or a 0 pad
                with m.If(~byte_full):
                    with m.If(~beat_empty):
                        m.d.comb += shift.eq(1)
                        m.d.sync += [out_beat.eq(out_beat >> 1), beat_left.eq(beat_left - 1),
                                     beat_empty.eq(beat_left == 1)]
                    with m.Elif(~all_taken):
                        with m.If(want & self.i_stream.valid):
                            m.d.sync += [out_beat.eq(self.i_stream.payload.data),
                                         beat_left.eq(out_beat_bits), beat_empty.eq(0),
                                         beats_taken.eq(beats_taken + 1),
                                         all_taken.eq(beats_taken == out_beats - 1)]
                        with m.Else():
                            m.d.sync += want.eq(1)
                    with m.Else():
                        m.d.comb += shift.eq(1)
                with m.Else():
                    send(out_byte, "REPLY_PAYLOAD")
                with m.If(shift):
                    m.d.sync += [out_byte.eq(Cat(out_byte[1:], out_beat[0] & ~beat_empty)),
                                 byte_fill.eq(byte_fill + 1), byte_full.eq(byte_fill == 7)]
                with m.If(byte_full & ~tx_full):
                    m.d.sync += [byte_full.eq(0), bytes_out.eq(bytes_out + 1),
                                 last_out.eq(bytes_out == out_bytes - 2)]
                    with m.If(last_out):
                        m.next = "REPLY_CRC"
            with m.State("REPLY_CRC"):
                send(crc, "HUNT", checked=False)
        return m


class BoardTop(wiring.Component):
    """``accelerator`` (a generated top with ``i_stream``/``o_stream``) behind a
    :class:`HostLink` of ``divisor`` clock cycles per UART bit.

    An accelerator with a load stream (a systolic design's loaded weights,
    :data:`~hwnn.rtl.engine.LOAD_PORT`) takes its ``load_words`` from the board's SPI flash
    after reset: ``flash`` gives the :class:`~hwnn.rtl.flash.FlashReader`'s ``offset``,
    ``divisor`` and ``wake_cycles`` (the image, :func:`~hwnn.ir.packing.word_image`, at that
    offset); the accelerator takes no input before.

    The link (UART and frames) and the flash reader run in clock domain ``link_domain``, which
    the parent defines when it is not ``sync`` (a board's own clock, slower than the
    accelerator's PLL clock: ``divisor`` and the reader's settings count its cycles); the
    beats and the weight words cross between the domains in
    :class:`~hwnn.rtl.crossing.StreamCrossing` s, also when both are ``sync``: no
    combinational path joins the link's or the reader's control to the accelerator's.

    Members
    -------
    rx : ``In(1)``; tx : ``Out(1)``
    flash_cs, flash_sck, flash_copi : ``Out(1)``; flash_cipo : ``In(1)``
        With a load stream only: the flash's pins (``flash_cs`` 1 selects it).
    """

    def __init__(self, accelerator, network, *, divisor, flash=None, link_domain="sync"):
        load = load_port(accelerator)
        if (load is None) != (flash is None):
            raise ValueError("flash (the FlashReader's offset, divisor, wake_cycles) is for an "
                             "accelerator with a load stream" if load is None else
                             f"{network.name!r} loads its weights after reset: BoardTop needs "
                             f"flash (the FlashReader's offset, divisor, wake_cycles)")
        if not isinstance(link_domain, str):
            raise TypeError(f"link_domain must be a clock domain name, not {link_domain!r}")
        self.accelerator, self.link_domain = accelerator, link_domain
        self.link = HostLink(
            in_count=accelerator.in_count,
            in_format=network.input.format, in_features=network.in_features,
            out_count=accelerator.out_count,
            out_format=network.output.format, out_features=network.out_features,
            divisor=divisor)
        self.reader = None if load is None else FlashReader(
            count=len(accelerator.load_words), word_bits=len(load.payload), **flash)
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            **({} if load is None else {"flash_cs": Out(1), "flash_sck": Out(1),
                                        "flash_copi": Out(1), "flash_cipo": In(1)})})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = accelerator = self.accelerator
        link = self.link
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx)]
        # The link and the flash reader run in the link's domain; each stream between them
        # and the accelerator crosses in a StreamCrossing.
        into_link = {"sync": self.link_domain}
        m.submodules.link = DomainRenamer(into_link)(link)
        streams = [("to_accelerator", link.o_stream, accelerator.i_stream, False),
                   ("to_link", accelerator.o_stream, link.i_stream, True)]
        if self.reader is not None:
            reader = self.reader
            m.submodules.flash = DomainRenamer(into_link)(reader)
            m.d.comb += [self.flash_cs.eq(reader.cs), self.flash_sck.eq(reader.sck),
                         self.flash_copi.eq(reader.copi), reader.cipo.eq(self.flash_cipo)]
            streams.append(("to_weights", reader.o_stream, load_port(accelerator), False))
        for name, source, sink, to_link in streams:
            domains = ("sync", self.link_domain) if to_link else (self.link_domain, "sync")
            crossing = m.submodules[name] = StreamCrossing(
                source.payload.shape(), i_domain=domains[0], o_domain=domains[1])
            wiring.connect(m, source, crossing.i_stream)
            wiring.connect(m, crossing.o_stream, sink)
        return m
