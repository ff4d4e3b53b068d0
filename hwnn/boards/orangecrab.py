"""OrangeCrab r0.2 with an ECP5-85F (48 MHz clock). It has no USB serial bridge: the host
link uses the Feather header's RX (pin 0) and TX (pin 1), for a 3.3 V USB-serial adapter."""

from amaranth.build import Attrs
from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_85FPlatform
from amaranth_boards.resources import UARTResource

from . import Board


class OrangeCrabWithUart(OrangeCrabR0_2_85FPlatform):
    # amaranth-boards platforms declare their resources as a class-level list.
    resources = [*OrangeCrabR0_2_85FPlatform.resources,  # noqa: RUF012
                 UARTResource(0, rx="0", tx="1", conn=("io", 0),
                              attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP"))]


BOARD = Board("orangecrab-85f", OrangeCrabWithUart, "ecp5-85f")
