"""iCEBreaker (iCE40UP5K-SG48, 12 MHz clock): the host link on the FTDI's second channel,
the board's own USB serial port."""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from . import Board

BOARD = Board("icebreaker", ICEBreakerPlatform, "ice40-up5k",
              build_options={"synth_opts": "-dsp",
                             # A global buffer for the host link's wide clock enables costs
                             # more than it saves (46.5 vs 49.4 MHz, digits int8 at 4 lanes).
                             "nextpnr_opts": "--no-promote-ce"},
              # The configuration flash (W25Q128JV), past the bitstream.
              flash=("spi_flash_1x", 0), program_flash="iceprog -o {offset} {image}")
