"""Words streamed out of a 25-series SPI NOR flash (W25Q128 and the like), for example the
configuration flash of an iCE40 board (the iCEBreaker's ``spi_flash_1x`` resource).

:func:`hwnn.ir.packing.word_image` gives the bytes a :class:`FlashReader` expects to find in
the flash.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ParameterError
from .params import check_positive_int

__all__ = ["FlashReader"]

_ADDRESS_SPACE = 1 << 24        # bytes a 24-bit address reaches
_READ = 0x03                    # READ DATA: 3 address bytes, then data while SCK runs
_RELEASE_POWER_DOWN = 0xAB


def _bytes_per_word(word_bits):
    return -(-word_bits // 8)


class FlashReader(wiring.Component):
    """Read ``count`` words of ``word_bits`` bits from a SPI flash at byte address ``offset``
    and offer them, in order, on ``o_stream``; then raise ``done``.

    Word ``i`` is the little-endian integer of the ``ceil(word_bits / 8)`` bytes at
    ``offset + i * ceil(word_bits / 8)``, truncated to ``word_bits`` bits (the layout of
    :func:`~hwnn.ir.packing.word_image`). The read must end within the 24-bit address space.

    The bus is SPI mode 0, one data line each way: SCK idles low, COPI changes only while SCK
    is low (with the falling edge) and ``cipo`` is sampled at the clock edge that raises SCK.
    Each half period of SCK lasts ``divisor`` clock cycles, so SCK runs at
    ``f_clk / (2 * divisor)`` (the READ command is good to 50 MHz on a W25Q128).

    After reset the reader keeps CS deselected for ``wake_cycles`` cycles (so a read cut short
    by a reset ends with the deselect time the flash needs), then sends RELEASE POWER-DOWN
    (0xAB): the iCE40 puts its flash in deep power-down once it has configured itself from
    it. It deselects the flash again for ``wake_cycles`` cycles, which must cover the flash's
    tRES1 (3 us on a W25Q128: 180 cycles at 60 MHz; the default, 200, covers clocks up to
    66 MHz), then sends READ (0x03) and the address, MSB first, and clocks in bytes, MSB
    first, for as long as the read lasts, with CS held. When the last byte is in, it deselects
    the flash (SCK low), and ``done`` rises once that is done and the last word has been
    taken: from then on the flash's pins are still, so they may be handed to other logic.

    Words come from a register (stream rule 2: the payload is stable while ``valid`` and not
    ``ready``). With ``o_stream.ready`` held high a word follows every :attr:`cycles_per_word`
    cycles, the first :attr:`latency` cycles after reset. While a word waits to be taken the
    next byte is clocked in, and then SCK stops, low, with CS held, until the word is taken:
    a flash read may pause for as long as it likes, so backpressure loses nothing.

    A reset at any cycle leaves the reader as at power-on: it deselects the flash and reads
    again from the start (the wake-up command included).

    Parameters
    ----------
    offset : int
        Byte address of the first word, ``0 .. 2 ** 24 - 1``.
    count : int
        Words to read, at least 1.
    word_bits : int
        Bits per word, at least 1.
    divisor : int
        Clock cycles per SCK half period, at least 1.
    wake_cycles : int
        Clock cycles with CS deselected after reset and after RELEASE POWER-DOWN, at least 1.

    Members
    -------
    o_stream : ``Out(stream.Signature(unsigned(word_bits)))``
    cs : ``Out(1)``, 1 selects the flash (the board resource inverts it onto the CS# pin)
    sck : ``Out(1)``
    copi : ``Out(1)``
    cipo : ``In(1)``
    done : ``Out(1)``, a register: 1 once all ``count`` words have been taken and the flash
        deselected, until reset
    """

    def __init__(self, offset, count, word_bits, divisor=1, *, wake_cycles=200):
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise TypeError(f"FlashReader offset must be an integer, not {offset!r}")
        if not 0 <= offset < _ADDRESS_SPACE:
            raise ParameterError("offset", "FlashReader offset",
                                 f"must be 0..{_ADDRESS_SPACE - 1}, not {offset!r}")
        check_positive_int("FlashReader", "count", count)
        check_positive_int("FlashReader", "word_bits", word_bits)
        check_positive_int("FlashReader", "divisor", divisor)
        check_positive_int("FlashReader", "wake_cycles", wake_cycles)
        room = (_ADDRESS_SPACE - offset) // _bytes_per_word(word_bits)
        if count > room:
            raise ParameterError("count", "FlashReader count",
                                 f"must be at most {room} (the words of {word_bits} bits "
                                 f"between offset {offset:#08x} and the end of the 24-bit "
                                 f"address space), not {count!r}")
        self.offset, self.count, self.word_bits = offset, count, word_bits
        self.divisor, self.wake_cycles = divisor, wake_cycles
        super().__init__({
            "o_stream": Out(stream.Signature(unsigned(word_bits))),
            "cs":       Out(1),
            "sck":      Out(1),
            "copi":     Out(1),
            "cipo":     In(1),
            "done":     Out(1),
        })

    @property
    def bytes_per_word(self) -> int:
        """Flash bytes per word, ``ceil(word_bits / 8)``."""
        return _bytes_per_word(self.word_bits)

    @property
    def cycles_per_word(self) -> int:
        """Clock cycles per word while the words are taken as soon as offered (8 SCK periods
        per byte, no gap between bytes)."""
        return 16 * self.divisor * self.bytes_per_word

    @property
    def latency(self) -> int:
        """Clock cycles from the end of reset to the first word's ``valid`` (it rises at that
        clock edge, the first after reset being 1): the two waits of ``wake_cycles``, 0xAB,
        READ and its address, the first word's bytes, and a cycle to move the last byte into
        the word register."""
        return 2 * self.wake_cycles + (80 + 16 * self.bytes_per_word) * self.divisor + 1

    def elaborate(self, platform):
        m = Module()
        divisor, wake_cycles = self.divisor, self.wake_cycles
        lanes = self.bytes_per_word
        word = self.o_stream

        # One down counter times both the waits and the SCK half periods.
        timer = Signal(range(max(wake_cycles, divisor)), init=wake_cycles - 1)
        expired = timer == 0
        bit = Signal(5)                 # rising SCK edges since the command began, mod 32
        shift = Signal(8)               # the data byte coming in, MSB first
        pending = Signal()              # shift holds a whole byte not yet in the word
        lane = Signal(range(lanes))     # the word's byte that the next byte fills
        words_left = Signal(range(self.count + 1), init=self.count)   # not yet complete
        all_read = Signal()             # words_left is 0 (a register: no compare before CS)

        # The bits of each command in the order sent: bit i of these is the i-th on COPI.
        def sent_order(value, width):
            return Const(int(f"{value:0{width}b}"[::-1], 2), width)
        wake_bits = sent_order(_RELEASE_POWER_DOWN, 8)
        read_bits = sent_order(_READ << 24 | self.offset, 32)

        # A whole byte goes into its lane of the word register as soon as the register is
        # free or being emptied (stream rule 2), in the cycle after its last bit came in.
        with m.If(word.ready):
            m.d.sync += word.valid.eq(0)
        with m.If(pending & (~word.valid | word.ready)):
            m.d.sync += pending.eq(0)
            for index in range(lanes):
                low = 8 * index
                high = min(low + 8, self.word_bits)
                with m.If(lane == index):
                    m.d.sync += word.payload[low:high].eq(shift[:high - low])
            with m.If(lane == lanes - 1):
                m.d.sync += [lane.eq(0), word.valid.eq(1), words_left.eq(words_left - 1),
                             all_read.eq(words_left == 1)]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)

        def select(state, bits):
            # CS goes active with the command's first bit already on COPI.
            m.d.sync += [self.cs.eq(1), timer.eq(divisor - 1), bit.eq(0), self.copi.eq(bits[0])]
            m.next = state

        def rise():
            m.d.sync += [self.sck.eq(1), timer.eq(divisor - 1), bit.eq(bit + 1)]

        def fall(copi):
            m.d.sync += [self.sck.eq(0), timer.eq(divisor - 1), self.copi.eq(copi)]

        with m.If(~expired):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("START"):
                with m.If(expired):
                    select("WAKE", wake_bits)
            with m.State("WAKE"):
                with m.If(expired):
                    with m.If(self.sck):
                        fall(wake_bits.bit_select(bit[:3], 1))
                    with m.Elif(bit[3]):                 # all 8 bits sent
                        m.d.sync += [self.cs.eq(0), timer.eq(wake_cycles - 1)]
                        m.next = "GAP"
                    with m.Else():
                        rise()
            with m.State("GAP"):
                with m.If(expired):
                    select("COMMAND", read_bits)
            with m.State("COMMAND"):
                with m.If(expired):
                    with m.If(self.sck):
                        fall(read_bits.bit_select(bit, 1))
                    with m.Else():
                        rise()
                        with m.If(bit == 31):            # the address's last bit; bit wraps
                            m.next = "DATA"
            with m.State("DATA"):
                with m.If(expired):
                    with m.If(self.sck):
                        fall(0)
                    with m.Elif(all_read):               # every byte is in a word (so none
                        m.d.sync += self.cs.eq(0)        # is pending)
                        m.next = "DONE"
                    with m.Elif(~pending):               # else SCK waits, low, for the word
                        rise()
                        m.d.sync += shift.eq(Cat(self.cipo, shift[:7]))
                        with m.If(bit[:3] == 7):
                            m.d.sync += pending.eq(1)
            with m.State("DONE"):
                with m.If(~word.valid | word.ready):     # the last word is taken
                    m.d.sync += self.done.eq(1)
        return m
