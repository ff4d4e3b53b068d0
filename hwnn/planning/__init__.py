"""Planning: models of what a design will do, computed before (or instead of) running it.

Modules here read the IR, the architectures' parameters and the generators' plans; given
activations, they never run the golden model themselves (the caller passes them in), so that
``hwnn.rtl`` can stay free of ``hwnn.sim``.
"""
