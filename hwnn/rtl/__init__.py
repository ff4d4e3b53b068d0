"""RTL generators (Amaranth 0.5 components). Never imports hwnn.sim."""
