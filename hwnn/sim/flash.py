"""A 25-series SPI NOR flash for testbenches: the protocol in plain Python, and the Amaranth
adapter that connects it to a design in Amaranth's simulator.

:class:`SpiFlashModel` takes the levels of CS, SCK and COPI whenever they may have changed and
answers with the level of CIPO, so a testbench only has to sample and drive pins: the adapter
here (:func:`serve_flash`) does so after every clock edge, the cocotb one
(:func:`hwnn.sim.cocotb_flash.serve_flash`) whenever CS or SCK changes.
"""

import random

__all__ = ["ADDRESS_SPACE", "READ", "RELEASE_POWER_DOWN", "SpiFlashModel", "ready_levels",
           "serve_flash"]

# Taken from the datasheets, not from hwnn.rtl.flash: the model checks the reader's commands
# instead of sharing them.

#: Bytes a 24-bit address reaches; a continuous read wraps from the last to the first.
ADDRESS_SPACE = 1 << 24

#: Opcode of READ DATA: three address bytes, MSB first, then data for as long as SCK runs.
READ = 0x03

#: Opcode of RELEASE POWER-DOWN.
RELEASE_POWER_DOWN = 0xAB


class SpiFlashModel:
    """A SPI NOR flash in mode 0 (SCK low when CS becomes active), one data line each way.

    It holds ``image`` at byte addresses ``base .. base + len(image) - 1`` of a 24-bit address
    space; every other address reads 0xFF, like erased flash. It understands two commands, an
    opcode byte sent MSB first on COPI while CS is active:

    - READ (0x03): three address bytes, MSB first; then, from the falling SCK edge after the
      address's last bit, one data bit per falling edge, MSB first, from that address on
      (the address goes up by one per byte and wraps at ``2 ** 24``) until CS is released.
    - RELEASE POWER-DOWN (0xAB): with CS released right after its eighth bit, it wakes the
      flash from deep power-down; it does nothing to a flash that is awake (the device ID a
      real flash sends when SCK keeps running is not modelled).

    Any other opcode is ignored until CS is released; releasing CS ends any command. A flash
    made ``asleep`` is in deep power-down: it ignores every command but 0xAB, and wakes
    ``wake_time`` after the release of CS that ends it (tRES1; a command begun before then is
    ignored too, and recorded in :attr:`violations`).

    Times are what the caller passes to :meth:`step`, in any unit that does not depend on
    SCK (the adapters pass clock cycles or nanoseconds); a ``wake_time`` of 0 checks nothing.
    CIPO is 1 whenever the flash does not drive it (high impedance, read as a pull-up would).

    Parameters
    ----------
    image : bytes-like
    base : int
        Address of the image's first byte.
    asleep : bool
        Start in deep power-down (as an iCE40 leaves its configuration flash).
    wake_time : int or float
        tRES1, in the unit of the times given to :meth:`step`.

    Attributes
    ----------
    commands : list of (int, int or None)
        Every command begun, in order: its opcode and, for a READ whose address was complete,
        the address (else None).
    violations : list of str
        What the bus did that the flash does not allow: CS activated while SCK was high, a
        command begun before tRES1 had passed.
    asleep : bool
        The flash is in deep power-down (or still waking from it).
    """

    def __init__(self, image, *, base=0, asleep=False, wake_time=0):
        try:
            image = bytes(image)
        except TypeError:
            raise TypeError(f"SpiFlashModel image must be bytes-like, not {image!r}") from None
        if not isinstance(base, int) or isinstance(base, bool):
            raise TypeError(f"SpiFlashModel base must be an integer, not {base!r}")
        if not 0 <= base <= ADDRESS_SPACE - len(image):
            raise ValueError(f"SpiFlashModel base must be 0..{ADDRESS_SPACE - len(image)} "
                             f"(the image of {len(image)} bytes within the 24-bit address "
                             f"space), not {base!r}")
        if isinstance(wake_time, bool) or not isinstance(wake_time, (int, float)):
            raise TypeError(f"SpiFlashModel wake_time must be a number, not {wake_time!r}")
        if wake_time < 0:
            raise ValueError(f"SpiFlashModel wake_time must be at least 0, not {wake_time!r}")
        self.image, self.base = image, base
        self.asleep, self.wake_time = bool(asleep), wake_time
        self.commands, self.violations = [], []
        self.cipo = 1
        self._cs = self._sck = False
        self._released_at = None         # when 0xAB released the deep power-down
        self._end_command()

    def read(self, address) -> int:
        """Return the byte at ``address`` (0xFF outside the image)."""
        offset = address - self.base
        return self.image[offset] if 0 <= offset < len(self.image) else 0xFF

    def step(self, cs, sck, copi, *, time=0) -> int:
        """Take the levels of CS (1 is active), SCK and COPI at ``time``, and return CIPO.

        Call it whenever one of them may have changed (calling it again with the same levels
        changes nothing). An SCK change at the same time as a CS change is not a clock edge.
        """
        cs, sck = bool(cs), bool(sck)
        if cs and not self._cs:
            self._select(sck, time)
        elif self._cs and not cs:
            self._release(time)
        elif cs and sck and not self._sck:
            self._rise(int(bool(copi)))
        elif cs and self._sck and not sck:
            self._fall()
        self._cs, self._sck = cs, sck
        return self.cipo

    def _end_command(self):
        self._phase = None               # "opcode", "address", "data", "release" or "ignore"
        self._bits = 0                   # bits received since CS became active
        self._byte = 0
        self._address = 0
        self._out_bits = 0               # bits of the current data byte sent
        self._out = 0
        self.cipo = 1

    def _select(self, sck, time):
        if sck:
            self.violations.append(f"CS activated at {time} with SCK high (mode 0 needs it "
                                   f"low)")
        self._end_command()
        self._phase = "opcode"
        if self._released_at is not None:
            if time - self._released_at >= self.wake_time:
                self.asleep, self._released_at = False, None
            else:
                self.violations.append(
                    f"CS activated at {time}, {time - self._released_at} after the release "
                    f"from deep power-down, before tRES1 ({self.wake_time})")

    def _release(self, time):
        if (self._phase == "release" and self._bits == 8 and self.asleep
                and self._released_at is None):
            self._released_at = time
        self._end_command()

    def _rise(self, copi):
        self._byte = (self._byte << 1 | copi) & 0xFF
        self._bits += 1
        if self._bits % 8:
            return
        if self._phase == "opcode":
            self.commands.append((self._byte, None))
            if self._byte == RELEASE_POWER_DOWN:
                self._phase = "release"
            elif self._byte == READ and not self.asleep:
                self._phase = "address"
            else:
                self._phase = "ignore"
        elif self._phase == "address":
            self._address = self._address << 8 | self._byte
            if self._bits == 32:
                self.commands[-1] = (READ, self._address)
                self._phase = "data"

    def _fall(self):
        if self._phase != "data":
            return
        if self._out_bits == 0:
            self._out = self.read(self._address)
            self._address = (self._address + 1) % ADDRESS_SPACE
        self.cipo = self._out >> (7 - self._out_bits) & 1
        self._out_bits = (self._out_bits + 1) % 8


def ready_levels(seed):
    """Yield, without end, the ``ready`` of a consumer for one cycle after another: always 1
    without a ``seed``; else (seeded) 1 or 0 at random, with now and then a pause of up to 150
    cycles, long enough for a slow producer (a flash reader) to have to stop."""
    rng = random.Random(seed)
    while True:
        if seed is not None and rng.random() < 0.03:
            yield from [0] * rng.randrange(1, 150)
        else:
            yield int(seed is None or rng.random() < 0.5)


async def serve_flash(ctx, pins, model, *, domain="sync"):
    """Connect ``model`` (a :class:`SpiFlashModel`) to the flash pins of a design in Amaranth's
    simulator, until the simulation ends.

    ``pins`` has the signals ``cs`` (1 is active), ``sck``, ``copi`` and ``cipo`` (a
    :class:`~hwnn.rtl.flash.FlashReader`, for one). After every edge of ``domain``'s clock the
    model takes the levels, and ``cipo`` gets its answer at once, before the next edge; the
    model's times are clock cycles. So ``cs``, ``sck`` and ``copi`` must change only at clock
    edges (registers), as they do on a real board to meet the flash's timing. Run it as a
    background testbench (it reads signals with ``ctx.get``)::

        sim.add_testbench(functools.partial(serve_flash, pins=dut, model=model),
                          background=True)
    """
    cycle = 0
    ctx.set(pins.cipo, model.cipo)
    async for _ in ctx.tick(domain):
        cycle += 1
        ctx.set(pins.cipo, model.step(ctx.get(pins.cs), ctx.get(pins.sck), ctx.get(pins.copi),
                                      time=cycle))
