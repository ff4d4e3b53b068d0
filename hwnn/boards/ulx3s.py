"""ULX3S with an ECP5-85F (25 MHz clock): the host link on the FTDI USB serial port (the
``uart_tx_enable`` line lets the FPGA drive the shared TX pin)."""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from . import Board

BOARD = Board("ulx3s-85f", ULX3S_85F_Platform, "ecp5-85f",
              enables=(("uart_tx_enable", 0),))
