"""hwnn: trained neural networks to verified FPGA accelerators, with pip and open tools."""

__version__ = "0.1.0"
