"""iCEBreaker (iCE40UP5K-SG48, 12 MHz clock): the host link on the FTDI's second channel,
the board's own USB serial port."""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from . import Board

BOARD = Board("icebreaker", ICEBreakerPlatform, "ice40-up5k",
              build_options={"synth_opts": "-dsp"})
