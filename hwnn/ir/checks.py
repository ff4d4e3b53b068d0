"""Checks shared by the IR's classes: integer and real arrays, plain integers, names, and the
keys of the mappings a network file holds. Each raises TypeError or ValueError naming the
offending value."""

import keyword
import re

import numpy as np

from ..errors import ParameterError

__all__ = ["VERILOG_KEYWORDS", "check_name", "expect_keys", "float_array", "int_array",
           "int_tuple", "plain_int"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The reserved words of Verilog-2005 and SystemVerilog (IEEE 1800-2017, which includes them):
#: Verilator and Yosys read them as keywords, so a module named after one comes out escaped.
VERILOG_KEYWORDS = frozenset("""
    accept_on alias always always_comb always_ff always_latch and assert assign assume automatic
    before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle
    checker class clocking cmos config const constraint context continue cover covergroup
    coverpoint cross deassign default defparam design disable dist do edge else end endcase
    endchecker endclass endclocking endconfig endfunction endgenerate endgroup endinterface
    endmodule endpackage endprimitive endprogram endproperty endspecify endsequence endtable
    endtask enum event eventually expect export extends extern final first_match for force
    foreach forever fork forkjoin function generate genvar global highz0 highz1 if iff ifnone
    ignore_bins illegal_bins implements implies import incdir include initial inout input inside
    instance int integer interconnect interface intersect join join_any join_none large let
    liblist library local localparam logic longint macromodule matches medium modport module
    nand negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output
    package packed parameter pmos posedge primitive priority program property protected pull0
    pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase
    randsequence rcmos real realtime ref reg reject_on release repeat restrict return rnmos
    rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime s_until s_until_with
    scalared sequence shortint shortreal showcancelled signed small soft solve specify
    specparam static string strong strong0 strong1 struct super supply0 supply1 sync_accept_on
    sync_reject_on table tagged task this throughout time timeprecision timeunit tran tranif0
    tranif1 tri tri0 tri1 triand trior trireg type typedef union unique unique0 unsigned until
    until_with untyped use uwire var vectored virtual void wait wait_order wand weak weak0
    weak1 while wildcard wire with within wor xnor xor
""".split())


def int_array(value, name, ndim):
    """``value`` as an int64 array of ``ndim`` dimensions (integers or booleans only)."""
    array = np.asarray(value)
    if array.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integers, not {array.dtype} values")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, not shape {array.shape}")
    return array.astype(np.int64)


def float_array(value, name):
    """``value`` as a float64 array of finite positive numbers (a scale)."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, not {array.dtype} values")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)) or not np.all(array > 0):
        raise ValueError(f"{name} must be finite and positive")
    return array


def check_name(name, subject):
    """Raise unless ``name`` can name a network or layer: a string (TypeError) that is an
    identifier in both Verilog and Python (ASCII letters, digits and underscores, not starting
    with a digit) and a keyword of neither (:class:`~hwnn.errors.ParameterError`, whose subject
    is ``subject``), so that it names a Verilog module and a Python attribute as it is."""
    if not isinstance(name, str):
        raise TypeError(f"{subject} must be a string, not {name!r}")
    if not _IDENTIFIER.fullmatch(name) or keyword.iskeyword(name) or name in VERILOG_KEYWORDS:
        raise ParameterError("name", subject, f"must be an identifier (letters, digits and "
                                              f"underscores, not starting with a digit) and not "
                                              f"a Verilog or Python keyword, not {name!r}")


def plain_int(value, name):
    """``value`` as a Python int (any integer but a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    return int(value)


def int_tuple(value, count, name, minimum) -> tuple[int, ...]:
    """``value``, an integer (meaning it ``count`` times) or ``count`` integers, as a tuple of
    Python ints, each at least ``minimum`` (TypeError for anything but integers, ValueError
    for another count or a smaller integer)."""
    items = (value,) * count if isinstance(value, int | np.integer) else value
    what = f"{name} must be an integer or {count} integers"
    try:
        items = tuple(plain_int(item, name) for item in items)
    except TypeError:
        raise TypeError(f"{what}, not {value!r}") from None
    if len(items) != count:
        raise ValueError(f"{what}, not {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{what} of at least {minimum}, not {value!r}")
    return items


def expect_keys(mapping, expected, what):
    """Raise a ValueError unless ``mapping`` is a dict whose keys are exactly ``expected``; the
    message names ``what`` and the missing and unexpected keys."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{what} must be a mapping, not {type(mapping).__name__}")
    missing, extra = expected - set(mapping), set(mapping) - expected
    if missing or extra:
        raise ValueError(f"{what} is inconsistent: "
                         + "; ".join(part for part in (
                             f"missing {', '.join(sorted(missing))}" if missing else "",
                             f"unexpected {', '.join(sorted(extra))}" if extra else "") if part))
