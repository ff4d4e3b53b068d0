"""Errors of hwnn beyond Python's own TypeError/ValueError/OSError for bad input."""

__all__ = ["ToolError"]


class ToolError(RuntimeError):
    """An external tool (simulator, synthesizer) failed on a design; the message names the log
    that says why."""
