"""Errors of hwnn beyond Python's own TypeError/ValueError/OSError for bad input."""

__all__ = ["ParameterError", "ToolError"]


class ParameterError(ValueError):
    """A parameter with a value it cannot take: the message is ``"<subject> <constraint>"``,
    for example ``"SparseParams pes must be 1..64, not 0"``.

    ``parameter`` is the name of the keyword argument or field (``"pes"``) and ``constraint``
    what it must be (``"must be 1..64, not 0"``), so that a front end can say the same in its
    own words: the ``hwnn`` command names the option the user typed (``--pes must be 1..64,
    not 0``).
    """

    def __init__(self, parameter, subject, constraint):
        super().__init__(f"{subject} {constraint}")
        self.parameter, self.subject, self.constraint = parameter, subject, constraint

    def __reduce__(self):           # keep the fields across processes (hwnn explore)
        return type(self), (self.parameter, self.subject, self.constraint)


class ToolError(RuntimeError):
    """An external tool (simulator, synthesizer) failed on a design; the message names the log
    that says why."""
