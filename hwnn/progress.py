"""Progress of long work, as plain lines on standard output.

:class:`Progress` counts finished items: on a terminal one line is rewritten in place,
elsewhere (a log, a pipe) a line is printed at each tenth of the way, so that a log stays
short and shows that the work goes on.
"""

import sys

__all__ = ["Progress"]


class Progress:
    """Call with the number of items done so far, out of ``total`` (``what`` they are:
    ``"inputs"``); prints ``  12/32 inputs``."""

    def __init__(self, total, what):
        self.total = total
        self.what = what
        self.stream = sys.stdout
        self.terminal = self.stream.isatty()

    def __call__(self, done):
        line = f"  {done}/{self.total} {self.what}"
        if self.terminal:
            print(f"\r{line}", end="\n" if done == self.total else "", file=self.stream,
                  flush=True)
        elif 10 * done // self.total > 10 * (done - 1) // self.total:
            print(line, file=self.stream, flush=True)
