"""The open FPGA tools from pip: ``toolchain`` (finding and wiring them up), ``synth`` (Yosys and
nextpnr runs, device capacities), ``implement`` (``hwnn synth``), ``build`` (``hwnn build``),
``absorb`` (registers moved into DSP blocks), ``rtlil`` (read-during-write freedom for
memories marked ``no_rw_check``).
"""
