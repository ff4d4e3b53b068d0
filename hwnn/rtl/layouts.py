"""Stream payload layouts shared by the generators, the simulators' drivers and the host.

Values are packed as :mod:`hwnn.ir.packing` says: element 0 in the least significant bits
(Amaranth ``Cat`` order), each in its format's bit encoding (two's complement; bipolar bit
1 = +1).
"""

from amaranth.hdl import unsigned
from amaranth.lib import data

__all__ = ["Beat"]


class Beat(data.StructLayout):
    """One stream beat: ``count`` values of ``width`` bits packed in ``data``, and ``last``,
    set on the final beat of a vector."""

    def __init__(self, count, width):
        self.count, self.width = count, width
        super().__init__({
            "data": unsigned(count * width),
            "last": unsigned(1),
        })
