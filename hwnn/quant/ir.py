"""The quantized-network IR: the one contract between frontends, golden model and generators.

A :class:`Network` is a list of layers (only :class:`Dense` so far; convolution and pooling
layers will join with their own ``kind``). Each layer holds integer weight codes, an integer
bias in the accumulator domain, the formats and scales of its input and output, and the
output stage that turns the accumulator into output codes:

* :class:`Thresholds`: ``level = #(t <= acc)`` per channel (``#(acc <= t)`` for a channel whose
  real output falls as the accumulator rises), output value = ``out_format.level_value(level)``
  (FINN's MultiThreshold);
* :class:`Requant`: ``clamp(((acc * M + 2**(s-1)) >> s) + zero_point, lo, hi)`` per channel,
  with ``2**(s-1)`` read as 0 when ``s`` is 0 (round half up), ``zero_point`` being the output
  format's;
* no stage (``None``): the output *is* the accumulator, in a signed format wide enough for it.

:meth:`Network.save` writes one ``.hwnn.npz`` file (a JSON header plus arrays, byte-identical
for the same network) and :meth:`Network.load` reads it back exactly, refusing any file that
is corrupt, truncated or inconsistent with a ``ValueError`` that says what is wrong.
"""

import io
import json
import keyword
import math
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..folders import honour_umask
from .formats import Format, signed_bits_for

__all__ = ["Dense", "Network", "Requant", "TensorFormat", "Thresholds", "accumulator_range"]

FILE_KIND = "hwnn-network"
FILE_VERSION = 1
#: Widest accumulator (and accumulator x multiplier product) the int64 golden model can hold.
MAX_PRODUCT_BITS = 63
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


def _int_array(value, name, ndim):
    array = np.asarray(value)
    if array.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integers, not {array.dtype} values")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, not shape {array.shape}")
    return array.astype(np.int64)


def _float_array(value, name):
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


def _plain_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class TensorFormat:
    """Format of a tensor crossing a layer boundary: codes plus how to dequantize them.

    ``real = (code - zero_point) * scale``; ``scale`` is a scalar (per tensor) or a vector with
    one entry per channel (only a network's final accumulator output is per channel).
    """
    format:     Format
    scale:      np.ndarray
    zero_point: int = 0

    def __post_init__(self):
        if not isinstance(self.format, Format):
            raise TypeError(f"format must be a Format, not {self.format!r}")
        scale = _float_array(self.scale, "scale")
        if scale.ndim > 1:
            raise ValueError(f"scale must be a scalar or a vector, not shape {scale.shape}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", _plain_int(self.zero_point, "zero_point"))

    def __eq__(self, other):
        return (isinstance(other, TensorFormat) and self.format == other.format
                and self.zero_point == other.zero_point and self.scale.shape == other.scale.shape
                and bool(np.all(self.scale == other.scale)))

    __hash__ = None

    def dequantize(self, codes) -> np.ndarray:
        """Real values of codes (channels on the last axis)."""
        return (np.asarray(codes, dtype=np.int64) - self.zero_point) * self.scale

    def __str__(self):
        scale = (f"{float(self.scale):.6g}" if self.scale.ndim == 0
                 else f"per-channel[{self.scale.size}]")
        return f"{self.format} x {scale}" + (f" zp {self.zero_point}" if self.zero_point else "")


@dataclass(frozen=True, eq=False)
class Thresholds:
    """Threshold output stage: ``values`` (channels x (levels - 1)), sorted ascending per channel
    for rising channels and descending for ``descending`` channels."""
    values:     np.ndarray
    descending: np.ndarray

    def __post_init__(self):
        values = _int_array(self.values, "Threshold values", 2)
        descending = np.asarray(self.descending)
        if descending.dtype != np.bool_ or descending.shape != values.shape[:1]:
            raise ValueError(f"Threshold directions must be {values.shape[0]} booleans, "
                             f"not {descending.dtype} of shape {descending.shape}")
        steps = np.diff(values, axis=1)
        ordered = np.where(descending[:, None], steps <= 0, steps >= 0)
        if not np.all(ordered):
            channel = int(np.nonzero(~np.all(ordered, axis=1))[0][0])
            raise ValueError(f"Thresholds of channel {channel} are not sorted in its direction")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "descending", descending)


@dataclass(frozen=True, eq=False)
class Requant:
    """Requantization output stage, per channel ``multiplier`` M (``0 <= M < 2**mult_bits``)
    and ``shift`` s (``0 <= s <= 62``), then ``zero_point`` and the clamp ``[lo, hi]``."""
    multiplier: np.ndarray
    shift:      np.ndarray
    mult_bits:  int
    zero_point: int
    lo:         int
    hi:         int

    def __post_init__(self):
        multiplier = _int_array(self.multiplier, "Requantization multipliers", 1)
        shift = _int_array(self.shift, "Requantization shifts", 1)
        mult_bits = _plain_int(self.mult_bits, "mult_bits")
        if not 1 <= mult_bits <= 32:
            raise ValueError(f"mult_bits must be 1..32, not {mult_bits}")
        if shift.shape != multiplier.shape:
            raise ValueError("Requantization multipliers and shifts differ in length")
        if np.any((multiplier < 0) | (multiplier >= 1 << mult_bits)):
            raise ValueError(f"Requantization multipliers must be 0..{(1 << mult_bits) - 1}")
        if np.any((shift < 0) | (shift > 62)):
            raise ValueError("Requantization shifts must be 0..62")
        for name in ("zero_point", "lo", "hi"):
            object.__setattr__(self, name, _plain_int(getattr(self, name), name))
        if self.lo > self.hi:
            raise ValueError(f"Requantization clamp is empty: lo {self.lo} > hi {self.hi}")
        object.__setattr__(self, "multiplier", multiplier)
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "mult_bits", mult_bits)


def accumulator_range(weights, bias, in_format: Format) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel bounds ``(lo, hi)`` of every partial sum of ``bias + weights @ x``.

    Each term ``w * x`` ranges over ``x`` in ``in_format``; the bounds add up each term's and
    the bias' extremes, with 0 included, so they hold for the final sum and for any partial
    sum in any accumulation order. Bounds beyond ``MAX_PRODUCT_BITS - 1`` bits raise a
    ``ValueError`` (their int64 sums could wrap around).
    """

    def bounds(weights, bias):
        low = weights * in_format.min_value
        high = weights * in_format.max_value
        return (np.minimum(np.minimum(low, high), 0).sum(axis=1) + np.minimum(bias, 0),
                np.maximum(np.maximum(low, high), 0).sum(axis=1) + np.maximum(bias, 0))

    weights = np.asarray(weights, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.int64)
    # The int64 sums are exact while the bounds stay below 2**62, which float64 sums can tell.
    reach = np.abs(np.concatenate(bounds(weights.astype(np.float64), bias.astype(np.float64))))
    if reach.size and reach.max() >= 2.0 ** (MAX_PRODUCT_BITS - 1):
        raise ValueError(f"Accumulator bounds reach {reach.max():.4g}, more than "
                         f"{MAX_PRODUCT_BITS - 1} bits")
    return bounds(weights, bias)


@dataclass(frozen=True, eq=False)
class Dense:
    """Fully connected layer ``acc = weights @ x + bias`` followed by its output stage.

    ``weights`` are codes of ``weight_format`` (out_features x in_features), with the real
    weight of row ``o`` being ``code * weight_scale[o]``; ``bias`` is in the accumulator
    domain, whose real scale per channel is ``weight_scale * input.scale``. ``stage`` is a
    :class:`Thresholds`, a :class:`Requant` or None (the accumulator is the output).
    ``activation`` names the real activation the stage implements (documentation only).
    ``codebook`` (weight sharing) lists the distinct nonzero weight codes, sorted; every
    nonzero weight is one of them, so a weight can be stored as a zero or a codebook index.
    """
    name:          str
    weights:       np.ndarray
    weight_format: Format
    weight_scale:  np.ndarray
    bias:          np.ndarray
    input:         TensorFormat
    output:        TensorFormat
    stage:         Thresholds | Requant | None
    activation:    str = "identity"
    codebook:      np.ndarray | None = None

    kind = "dense"

    def __post_init__(self):
        check_name(self.name, "Layer name")
        where = f"Layer {self.name!r}"
        weights = _int_array(self.weights, f"{where} weights", 2)
        if 0 in weights.shape:
            raise ValueError(f"{where} has an empty weight matrix of shape {weights.shape}")
        if not isinstance(self.weight_format, Format):
            raise TypeError(f"{where} weight_format must be a Format, not "
                            f"{self.weight_format!r}")
        if not self.weight_format.contains(weights):
            raise ValueError(f"{where} weights are outside their format {self.weight_format}")
        out_features = weights.shape[0]
        weight_scale = _float_array(self.weight_scale, f"{where} weight_scale")
        if weight_scale.shape != (out_features,):
            raise ValueError(f"{where} weight_scale must have {out_features} entries, not shape "
                             f"{weight_scale.shape}")
        bias = _int_array(self.bias, f"{where} bias", 1)
        if bias.shape != (out_features,):
            raise ValueError(f"{where} bias must have {out_features} entries, not shape "
                             f"{bias.shape}")
        for port in ("input", "output"):
            if not isinstance(getattr(self, port), TensorFormat):
                raise TypeError(f"{where} {port} must be a TensorFormat, not "
                                f"{getattr(self, port)!r}")
        if self.input.scale.ndim != 0:
            raise ValueError(f"{where} input scale must be per tensor (a scalar)")
        if self.output.scale.ndim == 1 and self.output.scale.shape != (out_features,):
            raise ValueError(f"{where} output scale must have {out_features} entries")
        if not isinstance(self.activation, str):
            raise TypeError(f"{where} activation must be a string, not {self.activation!r}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "weight_scale", weight_scale)
        object.__setattr__(self, "bias", bias)
        if self.codebook is not None:
            codebook = _int_array(self.codebook, f"{where} codebook", 1)
            if np.any(codebook == 0) or np.any(np.diff(codebook) <= 0):
                raise ValueError(f"{where} codebook must be sorted distinct nonzero codes")
            if not self.weight_format.contains(codebook):
                raise ValueError(f"{where} codebook is outside the weight format "
                                 f"{self.weight_format}")
            if not np.all(np.isin(weights[weights != 0], codebook)):
                raise ValueError(f"{where} has nonzero weights that are not in its codebook")
            object.__setattr__(self, "codebook", codebook)
        self._check_stage(where)

    def _check_stage(self, where):
        out_format = self.output.format
        try:
            lo, hi = self.acc_range
        except ValueError:
            lo, hi = None, None
        if lo is None or signed_bits_for(lo.min(), hi.max()) > MAX_PRODUCT_BITS - 1:
            raise ValueError(f"{where} accumulator needs more than {MAX_PRODUCT_BITS - 1} bits")
        stage = self.stage
        if isinstance(stage, Thresholds):
            if stage.values.shape != (self.out_features, out_format.levels - 1):
                raise ValueError(f"{where} needs {self.out_features} x {out_format.levels - 1} "
                                 f"thresholds for {out_format} outputs, not "
                                 f"{stage.values.shape[0]} x {stage.values.shape[1]}")
            if np.any((stage.values < lo[:, None] - 1) | (stage.values > hi[:, None] + 1)):
                raise ValueError(f"{where} thresholds lie outside the accumulator range")
        elif isinstance(stage, Requant):
            if stage.multiplier.shape != (self.out_features,):
                raise ValueError(f"{where} needs {self.out_features} requantization multipliers")
            if out_format.kind != "int":
                raise ValueError(f"{where} requantization needs an int output format, not "
                                 f"{out_format}")
            if stage.zero_point != self.output.zero_point:
                raise ValueError(f"{where} requantization zero point {stage.zero_point} is not "
                                 f"its output's zero point {self.output.zero_point}")
            if not (out_format.min_value <= stage.lo and stage.hi <= out_format.max_value):
                raise ValueError(f"{where} requantization clamp [{stage.lo}, {stage.hi}] "
                                 f"exceeds the output format {out_format}")
            if self.acc_bits + stage.mult_bits > MAX_PRODUCT_BITS:
                raise ValueError(f"{where} accumulator x multiplier needs "
                                 f"{self.acc_bits + stage.mult_bits} bits, more than "
                                 f"{MAX_PRODUCT_BITS}")
        elif stage is None:
            if out_format.kind != "int" or not out_format.signed \
                    or out_format.bits < self.acc_bits:
                raise ValueError(f"{where} outputs its accumulator, so its output format must "
                                 f"be int{self.acc_bits} or wider, not {out_format}")
        else:
            raise TypeError(f"{where} stage must be Thresholds, Requant or None, not {stage!r}")

    @property
    def in_features(self) -> int:
        return self.weights.shape[1]

    @property
    def out_features(self) -> int:
        return self.weights.shape[0]

    @property
    def acc_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel worst-case accumulator bounds (see :func:`accumulator_range`)."""
        return accumulator_range(self.weights, self.bias, self.input.format)

    @property
    def acc_bits(self) -> int:
        """Width of a signed accumulator that can never overflow in this layer."""
        lo, hi = self.acc_range
        return signed_bits_for(lo.min(), hi.max())

    @property
    def threshold_bits(self) -> int:
        """Width of a signed threshold (accumulator bounds widened by one on each side)."""
        lo, hi = self.acc_range
        return signed_bits_for(lo.min() - 1, hi.max() + 1)

    @property
    def stage_name(self) -> str:
        if isinstance(self.stage, Thresholds):
            return "thresholds"
        return "requant" if isinstance(self.stage, Requant) else "accumulator"

    @property
    def weight_bits(self) -> int:
        """Bits of weight memory (codes only)."""
        return self.weights.size * self.weight_format.width

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights."""
        return float(np.mean(self.weights == 0))

    # Serialization ----------------------------------------------------------------------------

    def _header_and_arrays(self):
        header = {
            "kind": self.kind, "name": self.name, "activation": self.activation,
            "weight_format": str(self.weight_format),
            "input": {"format": str(self.input.format), "zero_point": self.input.zero_point},
            "output": {"format": str(self.output.format), "zero_point": self.output.zero_point},
            "stage": self.stage_name,
        }
        arrays = {"weights": self.weights, "weight_scale": self.weight_scale, "bias": self.bias,
                  "input_scale": self.input.scale, "output_scale": self.output.scale}
        if isinstance(self.stage, Thresholds):
            arrays |= {"thresholds": self.stage.values, "descending": self.stage.descending}
        elif isinstance(self.stage, Requant):
            header["requant"] = {"mult_bits": self.stage.mult_bits, "lo": self.stage.lo,
                                 "hi": self.stage.hi, "zero_point": self.stage.zero_point}
            arrays |= {"multiplier": self.stage.multiplier, "shift": self.stage.shift}
        if self.codebook is not None:
            arrays["codebook"] = self.codebook
        return header, arrays

    @classmethod
    def _from_header_and_arrays(cls, header, arrays):
        _expect_keys(header, {"kind", "name", "activation", "weight_format", "input", "output",
                              "stage"} | ({"requant"} if header.get("stage") == "requant"
                                          else set()), "layer header")
        stage_arrays = {"thresholds": {"thresholds", "descending"},
                        "requant": {"multiplier", "shift"}, "accumulator": set()}
        if header["stage"] not in stage_arrays:
            raise ValueError(f"unknown output stage {header['stage']!r}")
        optional = {"codebook"} & set(arrays)
        _expect_keys(arrays, {"weights", "weight_scale", "bias", "input_scale", "output_scale"}
                     | stage_arrays[header["stage"]] | optional, "layer arrays")
        tensors = {}
        for port in ("input", "output"):
            _expect_keys(header[port], {"format", "zero_point"}, f"{port} header")
            tensors[port] = TensorFormat(Format.parse(header[port]["format"]),
                                         arrays[f"{port}_scale"], header[port]["zero_point"])
        if header["stage"] == "thresholds":
            stage = Thresholds(arrays["thresholds"], arrays["descending"])
        elif header["stage"] == "requant":
            params = header["requant"]
            _expect_keys(params, {"mult_bits", "lo", "hi", "zero_point"}, "requant header")
            stage = Requant(arrays["multiplier"], arrays["shift"], **params)
        else:
            stage = None
        return cls(name=header["name"], weights=arrays["weights"],
                   weight_format=Format.parse(header["weight_format"]),
                   weight_scale=arrays["weight_scale"], bias=arrays["bias"],
                   input=tensors["input"], output=tensors["output"], stage=stage,
                   activation=header["activation"], codebook=arrays.get("codebook"))


LAYER_KINDS = {Dense.kind: Dense}


def _expect_keys(mapping, expected, what):
    if not isinstance(mapping, dict):
        raise ValueError(f"{what} must be a mapping, not {type(mapping).__name__}")
    missing, extra = expected - set(mapping), set(mapping) - expected
    if missing or extra:
        raise ValueError(f"{what} is inconsistent: "
                         + "; ".join(part for part in (
                             f"missing {', '.join(sorted(missing))}" if missing else "",
                             f"unexpected {', '.join(sorted(extra))}" if extra else "") if part))


@dataclass(frozen=True, eq=False)
class Network:
    """A quantized network: layers that chain (each input is the previous output), a name, and
    free-form JSON ``info`` (where it came from, quantization options, float accuracy)."""
    name:   str
    layers: tuple
    info:   dict = field(default_factory=dict)

    def __post_init__(self):
        check_name(self.name, "Network name")
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("A network needs at least one layer")
        for layer in layers:
            if not isinstance(layer, tuple(LAYER_KINDS.values())):
                raise TypeError(f"Network layers must be IR layers, not {layer!r}")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"Layer names must be unique, not {names}")
        for before, after in pairwise(layers):
            if after.in_features != before.out_features:
                raise ValueError(f"Layer {after.name!r} takes {after.in_features} inputs but "
                                 f"layer {before.name!r} gives {before.out_features}")
            if after.input != before.output:
                raise ValueError(f"Layer {after.name!r} expects inputs {after.input} but layer "
                                 f"{before.name!r} gives {before.output}")
        try:
            json.dumps(self.info, sort_keys=True)
        except (TypeError, ValueError) as error:
            raise TypeError(f"Network info must be JSON-serializable: {error}") from None
        object.__setattr__(self, "layers", layers)

    @property
    def input(self) -> TensorFormat:
        return self.layers[0].input

    @property
    def output(self) -> TensorFormat:
        return self.layers[-1].output

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    def quantize_input(self, x) -> np.ndarray:
        """Input codes of real inputs ``x`` (round half to even, saturate)."""
        from .quantizers import QuantParams, quantize
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Inputs must have {self.in_features} features on the last axis, "
                             f"not shape {x.shape}")
        if self.input.format.kind == "bipolar":
            return np.where(x >= 0, 1, -1).astype(np.int64)
        return quantize(x, self.input.format,
                        QuantParams(self.input.scale, self.input.zero_point))

    def dequantize_output(self, codes) -> np.ndarray:
        """Real values of output codes."""
        return self.output.dequantize(codes)

    # Files ------------------------------------------------------------------------------------

    def save(self, path) -> Path:
        """Write the network to ``path`` (a ``.hwnn.npz``) atomically; return the path."""
        path = Path(path)
        header = {"kind": FILE_KIND, "version": FILE_VERSION, "name": self.name,
                  "info": self.info, "layers": []}
        arrays = {}
        for index, layer in enumerate(self.layers):
            layer_header, layer_arrays = layer._header_and_arrays()
            header["layers"].append(layer_header)
            arrays |= {f"layer{index}/{key}": value for key, value in layer_arrays.items()}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            # Fixed timestamps: the same network always gives the same bytes.
            def add(name, data):
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
            add("header.json", json.dumps(header, sort_keys=True, indent=1).encode())
            for name in sorted(arrays):
                data = io.BytesIO()
                np.lib.format.write_array(data, np.asarray(arrays[name], order="C"),
                                          allow_pickle=False)
                add(f"{name}.npy", data.getvalue())
        _write_atomically(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, path) -> "Network":
        """Read a network written by :meth:`save`, validating everything."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No network file at {str(path)!r}")
        try:
            return cls._load(path)
        except ParameterError as error:
            # Earlier versions of hwnn accepted any name.
            raise ValueError(f"{str(path)!r} is not a valid hwnn network: {error} (quantize the "
                             f"model again with another name)") from None
        # zipfile raises zlib.error for a corrupt deflate stream, RuntimeError for an encrypted
        # member and NotImplementedError (a RuntimeError) for an unknown compression method.
        except (ValueError, TypeError, KeyError, OSError, EOFError, RuntimeError,
                zipfile.BadZipFile, zlib.error) as error:
            raise ValueError(f"{str(path)!r} is not a valid hwnn network: {error}") from None

    @classmethod
    def _load(cls, path):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "header.json" not in names:
                raise ValueError("it has no header.json")
            header = json.loads(archive.read("header.json"))
            _expect_keys(header, {"kind", "version", "name", "info", "layers"}, "header")
            if header["kind"] != FILE_KIND:
                raise ValueError(f"its kind is {header['kind']!r}, not {FILE_KIND!r}")
            if header["version"] != FILE_VERSION:
                raise ValueError(f"its version is {header['version']!r}; this hwnn reads "
                                 f"version {FILE_VERSION}")
            arrays = {}
            for name in names - {"header.json"}:
                if not name.endswith(".npy") or "/" not in name:
                    raise ValueError(f"unexpected member {name!r}")
                layer, key = name[:-4].split("/", 1)
                arrays.setdefault(layer, {})[key] = _read_member(archive, name)
        if not isinstance(header["layers"], list):
            raise ValueError("its layer list is not a list")
        expected = {f"layer{index}" for index in range(len(header["layers"]))}
        if unknown := sorted(set(arrays) - expected):
            raise ValueError(f"arrays of unknown layers: {', '.join(unknown)}")
        layers = []
        for index, layer_header in enumerate(header["layers"]):
            kind = layer_header.get("kind") if isinstance(layer_header, dict) else None
            if kind not in LAYER_KINDS:
                raise ValueError(f"layer {index} has unknown kind {kind!r}")
            layers.append(LAYER_KINDS[kind]._from_header_and_arrays(
                layer_header, arrays.get(f"layer{index}", {})))
        return cls(header["name"], tuple(layers), header["info"])


_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}


def _read_member(archive, name) -> np.ndarray:
    """The array of the ``.npy`` member ``name`` of ``archive``. Its header is read first: a
    member whose declared shape and dtype do not fill exactly the bytes it holds is refused
    (ValueError) before any array is allocated, so a corrupt file cannot ask for terabytes."""
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version not in _NPY_HEADER_READERS:
            raise ValueError(f"member {name!r} has .npy format version {version}, not 1.0 or 2.0")
        shape, fortran_order, dtype = _NPY_HEADER_READERS[version](member)
        if dtype.hasobject:
            raise ValueError(f"member {name!r} holds Python objects, not numbers")
        declared = math.prod(shape) * dtype.itemsize
        held = archive.getinfo(name).file_size - member.tell()
        if declared != held:
            raise ValueError(f"member {name!r} declares {dtype} values of shape {shape} "
                             f"({declared} bytes) but holds {held} bytes")
        data = member.read()
    order = "F" if fortran_order else "C"
    return np.frombuffer(data, dtype).reshape(shape, order=order).copy()


def _write_atomically(path: Path, data: bytes):
    """Write ``data`` to ``path`` whole or not at all (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        honour_umask(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
