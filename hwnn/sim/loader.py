"""The producer of a design's load stream: the words a design takes after reset, before it
works (a systolic design's loaded weights, ``w_stream``).

:class:`WordLoader` is plain Python, like :class:`~hwnn.sim.resets.ResetBench`: Amaranth's
simulator (:mod:`hwnn.sim.pysim`) and cocotb (:mod:`hwnn.sim.cocotb_stream`,
:mod:`hwnn.sim.cocotb_reset`) apply :meth:`WordLoader.drive` before each rising edge and report
the edge with :meth:`WordLoader.observe`.
"""

import random

from ..rtl.engine import LOAD_PORT

__all__ = ["LOAD_PORT", "WordLoader", "drive_cocotb"]


class WordLoader:
    """Offers ``words`` in order; with a ``seed``, idles at random (seeded) before a word, but
    never withdraws one it offers; a cycle of reset starts it again from the first word (a
    reset empties the design's memory as at power-on)."""

    def __init__(self, words, seed=None):
        self.words = [int(word) for word in words]
        self._rng = random.Random(seed)
        self._stalls = seed is not None
        self._next = 0
        self._offering = False

    @property
    def done(self) -> bool:
        """Every word has been taken since the last reset."""
        return self._next == len(self.words)

    def drive(self) -> tuple[int, int]:
        """``(valid, payload)`` for the next rising edge."""
        if not self._offering and not self.done:
            self._offering = not (self._stalls and self._rng.random() < 0.3)
        return int(self._offering), self.words[self._next] if self._offering else 0

    def observe(self, rst, ready):
        """The edge :meth:`drive` prepared: ``rst`` and the stream's ``ready`` at it."""
        if rst:
            self._next, self._offering = 0, False
        elif self._offering and ready:
            self._next += 1
            self._offering = False


def drive_cocotb(loader, dut):
    """Apply ``loader``'s :meth:`~WordLoader.drive` to ``dut``'s load stream (cocotb handles)
    for the next rising edge; return a function that reads the stream's ``ready`` once the
    edge's inputs have settled."""
    valid, word = loader.drive()
    getattr(dut, f"{LOAD_PORT}__valid").value = valid
    getattr(dut, f"{LOAD_PORT}__payload").value = word
    return lambda: int(getattr(dut, f"{LOAD_PORT}__ready").value)
