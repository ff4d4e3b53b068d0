"""Post-training quantization of a :class:`~hwnn.quant.floatnet.FloatNetwork` into the IR.

:class:`QuantOptions` holds every choice, validated once; :func:`quantize_network` applies it.
Per layer, weights become codes of the weight scheme (per tensor or per output channel), and
the output stage is chosen as follows:

* the last dense or convolution layer outputs its accumulators (``last_stage="accumulator"``,
  the default; the float bias is rounded into the accumulator domain), so classification is
  an argmax;
* a hidden layer with binary activations, with activations of at most
  ``max_threshold_bits`` bits, or with a non-linear activation other than ReLU uses
  thresholds, which fold bias, BatchNorm, activation and quantizer exactly;
* other hidden layers (identity or ReLU, wider int activations) use requantization, with the
  BatchNorm folded into the float weights first; the layer shares one shift (a constant shift
  in hardware) unless that would leave a channel's multiplier with fewer than
  ``mult_bits - 4`` significant bits.

Binary activations replace the hidden activation function by ``sign`` (as in BNNs), and the
network input is quantized to 8 bits unless ``input_format`` says otherwise.

A convolution is quantized as the dense layer of its im2col matrix (``(C_out, kh * kw *
C_in / groups)``; per-channel things per output channel), its accumulator bounds exact with
padding. A max pool keeps the codes of the layer before it: it follows that layer's output
stage, which commutes with it as activations and quantizers are monotone.

Accumulators work on raw codes, ``acc = weights @ codes + bias``. Calibration is symmetric, so
every zero point is 0 and the integer bias is the float one in accumulator units (the IR folds
any other input zero point into the bias). A calibrated range that says nothing (every
calibration sample giving a tensor the same values, or an unsigned tensor nothing above 0)
raises a :class:`CalibrationWarning` naming the tensor.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from ..ir import Conv2d, Dense, MaxPool2d, Network, Requant, TensorFormat, accumulator_range
from ..ir.conv import conv_acc_range
from ..ir.formats import Format, Rounding, round_values, signed_bits_for
from .compress import prune_masks, share_weights
from .floatnet import FloatConv2d, FloatMaxPool2d, FloatNetwork, FloatWeighted
from .fold import requant_for, stage_function, thresholds_for
from .quantizers import QuantParams, affine_params, binarize, calibrate, quantize, ternarize

__all__ = ["BIAS_HEADROOM_BITS", "CalibrationWarning", "QuantOptions", "prune_network",
           "quantize_network"]

WEIGHT_SCHEMES = (*(f"int{bits}" for bits in range(2, 17)), "ternary", "binary")
ACT_BITS = range(1, 17)
STAGES = ("auto", "thresholds", "requant")
#: With per-channel weight scales, a channel's bias reaches at most ``2**BIAS_HEADROOM_BITS``
#: times the largest accumulator the layer's weights can produce (see ``_quantize_weights``).
BIAS_HEADROOM_BITS = 8


class CalibrationWarning(UserWarning):
    """A layer's calibrated range is degenerate, so its scale is a guess."""


def _parse_acts(name, parameter, what):
    try:
        fmt = Format.parse(name)
    except ValueError:
        fmt = None
    if fmt is None or (fmt.kind == "int" and (fmt.bits not in ACT_BITS or fmt.narrow or
                                             (fmt.signed and fmt.bits < 2))):
        raise ParameterError(parameter, what, f"must be uint1..uint16, int2..int16 or binary, "
                                              f"not {name!r}")
    return fmt


@dataclass(frozen=True)
class QuantOptions:
    """How to quantize a float network.

    Members
    -------
    weights : ``"int2"`` .. ``"int16"``, ``"ternary"`` or ``"binary"``
    acts : hidden activations, ``"uint<k>"``/``"int<k>"`` (k <= 16) or ``"binary"``
    input_format : network input format; None picks ``uint8`` for non-negative calibration
        data, else ``int8``
    per_channel : int weights scaled per output channel rather than per tensor
    calibration : ``"minmax"`` or ``"percentile"`` (``percentile`` of the samples)
    stage : hidden output stage, ``"auto"``, ``"thresholds"`` or ``"requant"``
    max_threshold_bits : with ``stage="auto"``, activations this narrow use thresholds
    mult_bits : requantization multiplier width
    prune : fraction of weights removed by magnitude (Deep Compression), ``[0, 1)``
    prune_scope : ``"layer"`` (each layer loses ``prune``) or ``"global"``
    share : weight sharing, at most ``2**share - 1`` distinct nonzero codes per layer (k-means;
        with zero, a ``share``-bit codebook index per weight),
        recorded as the layer's codebook; None shares nothing
    """
    weights:            str = "int8"
    acts:               str = "uint8"
    input_format:       str | None = None
    per_channel:        bool = False
    calibration:        str = "minmax"
    percentile:         float = 99.99
    stage:              str = "auto"
    max_threshold_bits: int = 4
    mult_bits:          int = 16
    prune:              float = 0.0
    prune_scope:        str = "layer"
    share:              int | None = None

    def __post_init__(self):
        if self.weights not in WEIGHT_SCHEMES:
            raise ParameterError("weights", "Weights", f"must be int2..int16, ternary or binary, "
                                                       f"not {self.weights!r}")
        _parse_acts(self.acts, "acts", "Activations")
        if self.input_format is not None:
            _parse_acts(self.input_format, "input_format", "The input format")
        if not isinstance(self.per_channel, bool):
            raise TypeError(f"per_channel must be a bool, not {self.per_channel!r}")
        if self.calibration not in ("minmax", "percentile"):
            raise ValueError(f"Calibration must be 'minmax' or 'percentile', not "
                             f"{self.calibration!r}")
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, int | float) \
                or not 0 < self.percentile <= 100:
            raise ParameterError("percentile", "percentile",
                                 f"must be in (0, 100], not {self.percentile!r}")
        if self.stage not in STAGES:
            raise ValueError(f"Output stage must be one of {', '.join(STAGES)}, not "
                             f"{self.stage!r}")
        if isinstance(self.prune, bool) or not isinstance(self.prune, int | float) \
                or not 0 <= self.prune < 1:
            raise ParameterError("prune", "prune", f"must be a fraction in [0, 1), not "
                                                   f"{self.prune!r}")
        if self.prune_scope not in ("layer", "global"):
            raise ValueError(f"prune_scope must be 'layer' or 'global', not "
                             f"{self.prune_scope!r}")
        if self.share is not None and (isinstance(self.share, bool)
                                       or not isinstance(self.share, int)
                                       or not 1 <= self.share <= 8):
            raise ParameterError("share", "share", f"must be 1..8 bits or None, not "
                                                   f"{self.share!r}")
        if self.weights == "binary" and (self.prune or self.share is not None):
            raise ValueError("Binary weights can be neither pruned nor shared: +-1 has no zero "
                             "and only two values")
        for name, low, high in (("max_threshold_bits", 1, 16), ("mult_bits", 2, 32)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not low <= value <= high:
                raise ParameterError(name, name, f"must be {low}..{high}, not {value}")

    @property
    def act_format(self) -> Format:
        return Format.parse(self.acts)

    @property
    def weight_format(self) -> Format:
        return Format.parse(self.weights)


def _stored_weight_format(options: QuantOptions) -> Format:
    fmt = options.weight_format
    # int-k weights use the narrow range: symmetric codes, so negating one never overflows.
    return Format.int(fmt.bits, narrow=True) if fmt.kind == "int" else fmt


def _quantize_weights(weight, bias, tensor: TensorFormat, options: QuantOptions):
    """Weight codes and per-output-channel scales of a layer computing ``weight @ x + bias`` on
    inputs ``tensor`` (``bias`` real, zero where the stage holds it instead).

    Per-channel scales (ternary, binary, ``per_channel``) follow each channel's weights, except
    that a channel whose weights are negligible next to its bias (a dead ReLU neuron's weights
    are about 1e-13) gets the coarser scale at which its bias, in accumulator units, is
    ``2**BIAS_HEADROOM_BITS`` times the largest accumulator of the layer's weights: its weights
    then mostly round to zero (binary ones keep their sign) instead of making the bias and the
    requantization explode. A channel whose codes are all zero outputs a constant, its bias,
    and takes the coarsest scale of the layer's other channels (at least that floor).
    """
    fmt = _stored_weight_format(options)
    if options.weights == "binary":
        codes, scale = binarize(weight, axis=0, scaled=True)
    elif options.weights == "ternary":
        codes, scale = ternarize(weight, axis=0)
    elif options.per_channel:
        params = affine_params(weight, fmt, axis=0)
        codes, scale = quantize(weight, fmt, params), params.scale
    else:
        params = affine_params(weight, fmt)
        return quantize(weight, fmt, params), np.full(weight.shape[0], float(params.scale))
    in_format = tensor.format
    reach = weight.shape[1] * fmt.max_value * max(-in_format.min_value, in_format.max_value)
    floor = np.abs(bias) / (2.0 ** BIAS_HEADROOM_BITS * reach * tensor.scale)
    coarse = scale < floor
    scale = np.where(coarse, floor, scale)
    if fmt.kind == "int" and np.any(coarse):
        codes = np.where(coarse[:, None], quantize(weight, fmt, QuantParams(scale, 0, axis=0)),
                         codes)
    constant = ~np.any(codes, axis=1)
    top = scale[~constant].max() if not np.all(constant) else 1.0
    return codes, np.where(constant, np.maximum(floor, top), scale)


def _calibrated(samples, fmt: Format, options: QuantOptions, where: str) -> TensorFormat:
    """The format of a tensor calibrated on ``samples``; a :class:`CalibrationWarning` naming
    ``where`` the tensor is if its range is degenerate."""
    if fmt.kind == "bipolar":
        return TensorFormat(fmt, 1.0)
    if np.all(samples == samples[:1]):
        reason = "every calibration sample gives it the same values"
    elif not np.any(samples if fmt.signed else np.maximum(samples, 0)):
        reason = f"{fmt} keeps none of its values, as none is above 0"
    else:
        reason = None
    if reason is not None:
        warnings.warn(f"The calibrated range of {where} is degenerate: {reason}; calibrate on "
                      f"representative inputs", CalibrationWarning, stacklevel=3)
    params = calibrate(samples, fmt, method=options.calibration, percentile=options.percentile)
    return TensorFormat(fmt, params.scale, int(params.zero_point))


def _uses_thresholds(layer: FloatWeighted, fmt: Format, options: QuantOptions) -> bool:
    if options.stage != "auto":
        return options.stage == "thresholds"
    return (fmt.kind == "bipolar" or fmt.bits <= options.max_threshold_bits
            or layer.activation not in ("identity", "relu"))


def _check_requant(layer: FloatWeighted, fmt: Format, name: str):
    if fmt.kind != "int":
        raise ValueError(f"Layer {name!r}: binary activations need thresholds, not "
                         f"requantization")
    if layer.activation not in ("identity", "relu"):
        raise ValueError(f"Layer {name!r}: requantization implements identity or relu, not "
                         f"{layer.activation!r}; use thresholds")


def _requant_params(ratio, mult_bits):
    """Multipliers and shifts; one shift for the whole layer (a constant shift in hardware)
    unless that leaves some channel's multiplier with fewer than ``mult_bits - 4`` bits."""
    multiplier, shift = requant_for(ratio, mult_bits, shared_shift=True)
    if mult_bits > 4 and multiplier.min() < 1 << (mult_bits - 5):
        multiplier, shift = requant_for(ratio, mult_bits)
    return multiplier, shift


def _check_args(network, options) -> QuantOptions:
    if not isinstance(network, FloatNetwork):
        raise TypeError(f"network must be a FloatNetwork, not {network!r}")
    options = QuantOptions() if options is None else options
    if not isinstance(options, QuantOptions):
        raise TypeError(f"options must be a QuantOptions, not {options!r}")
    return options


def prune_network(network: FloatNetwork, options: QuantOptions | None = None) -> FloatNetwork:
    """The float network that ``quantize_network`` quantizes: ``network`` with the weights that
    ``options.prune`` removes set to zero (``network`` itself when nothing is pruned)."""
    options = _check_args(network, options)
    if not options.prune:
        return network
    weighted = [layer for layer in network.layers if isinstance(layer, FloatWeighted)]
    masks = iter(prune_masks([layer.weight for layer in weighted], options.prune,
                             scope=options.prune_scope))
    return FloatNetwork(tuple(layer.with_weight(layer.weight * next(masks))
                              if isinstance(layer, FloatWeighted) else layer
                              for layer in network.layers),
                        network.info, network.input_layout)


def _layer_name(layer, index) -> str:
    kind = {FloatConv2d: "conv", FloatMaxPool2d: "pool"}.get(type(layer), "dense")
    return f"{kind}{index}"


def _acc_range(layer: FloatWeighted, codes, bias, tensor: TensorFormat):
    """Per-channel accumulator bounds of ``layer`` with weight codes ``codes`` (a matrix)
    on inputs ``tensor``: exact with a convolution's padding."""
    if isinstance(layer, FloatConv2d):
        return conv_acc_range(codes.reshape(layer.weight.shape), bias, tensor, layer.in_size,
                              layer.stride, layer.padding)
    return accumulator_range(codes, bias, tensor.format)


def _ir_layer(layer: FloatWeighted, name, codes, codebook, **fields):
    """The IR layer of ``layer`` with weight codes ``codes`` (a matrix) and the common
    ``fields`` of a weighted IR layer."""
    if isinstance(layer, FloatConv2d):
        if codebook is not None:
            raise ValueError(f"Layer {name!r} is a convolution: weights are shared in dense "
                             f"layers only")
        return Conv2d(name, layer.in_size, codes.reshape(layer.weight.shape), **fields,
                      stride=layer.stride, padding=layer.padding, groups=layer.groups)
    return Dense(name, codes, **fields, codebook=codebook)


def quantize_network(network: FloatNetwork, calib, options: QuantOptions | None = None, *,
                     name="net") -> Network:
    """Quantize ``network`` with ``options``, calibrating activations on inputs ``calib`` (as
    :meth:`~hwnn.quant.floatnet.FloatNetwork.check_inputs` takes them; on the pruned network's
    activations when ``options.prune``: see :func:`prune_network`).

    Dense layers become :class:`~hwnn.ir.Dense`, convolutions :class:`~hwnn.ir.Conv2d` (the
    same quantization of their im2col matrix, per output channel where per channel; no weight
    sharing) and pools :class:`~hwnn.ir.MaxPool2d` after the output stage of the layer before
    them. The last dense or convolution layer outputs its accumulators."""
    options = _check_args(network, options)
    inputs = network.check_inputs(calib)
    if inputs.shape[0] == 0:
        raise ValueError("Calibration needs at least one input sample")

    network = prune_network(network, options)
    input_name = options.input_format or ("uint8" if inputs.min() >= 0 else "int8")
    tensor = _calibrated(inputs, Format.parse(input_name), options, "the network input")
    float_outputs = network.forward(calib, trace=True)
    act_format = options.act_format
    layers = []
    last_weighted = max((index for index, layer in enumerate(network.layers)
                         if isinstance(layer, FloatWeighted)), default=None)
    if last_weighted is None:
        raise ValueError("A network to quantize needs a dense or convolution layer")
    for index, float_layer in enumerate(network.layers):
        layer_name = _layer_name(float_layer, index)
        if isinstance(float_layer, FloatMaxPool2d):
            # A pool takes the codes of the layer before it: after its output stage, which is
            # exact as the float activation before it is monotone.
            layers.append(MaxPool2d(layer_name, float_layer.in_size, float_layer.in_channels,
                                    float_layer.kernel, tensor, float_layer.stride))
            continue
        where = f"the output of layer {layer_name!r}"
        last = index == last_weighted
        thresholds = not last and _uses_thresholds(float_layer, act_format, options)
        if not last and not thresholds:
            _check_requant(float_layer, act_format, layer_name)
        if not thresholds:
            # Requantization and the accumulator output have no BatchNorm of their own.
            float_layer = float_layer.folded()
        # The bias the accumulator adds; a threshold stage holds it instead.
        acc_bias = np.zeros_like(float_layer.bias) if thresholds else float_layer.bias
        codes, weight_scale = _quantize_weights(float_layer.matrix, acc_bias, tensor, options)
        codebook = None
        if options.share is not None:
            codes, codebook = share_weights(codes, options.share)
        acc_scale = weight_scale * tensor.scale
        weight_format = _stored_weight_format(options)
        if thresholds:
            # The float bias, BatchNorm, activation and quantizer all fold into the thresholds.
            activation = "sign" if act_format.kind == "bipolar" else float_layer.activation
            bias = np.zeros(codes.shape[0], dtype=np.int64)
            output = _calibrated(float_outputs[index], act_format, options, where)
            function = stage_function(
                acc_scale=acc_scale, bias=float_layer.bias, batchnorm=float_layer.batchnorm,
                activation=activation, out_format=act_format, out_scale=float(output.scale),
                out_zero_point=output.zero_point)
            lo, hi = _acc_range(float_layer, codes, bias, tensor)
            gain = acc_scale * (float_layer.batchnorm.gain if float_layer.batchnorm else 1.0)
            stage = thresholds_for(function, lo, hi, act_format, gain < 0)
        else:
            activation = float_layer.activation
            bias = round_values(float_layer.bias / acc_scale, Rounding.HALF_EVEN).astype(np.int64)
            if last:
                lo, hi = _acc_range(float_layer, codes, bias, tensor)
                bits = signed_bits_for(lo.min(), hi.max())
                if bits > Format.MAX_BITS:
                    raise ValueError(f"Layer {layer_name!r} outputs its accumulator, which needs "
                                     f"{bits} bits, more than the {Format.MAX_BITS} an output "
                                     f"can have: use narrower weights or activations")
                output = TensorFormat(Format.int(bits), acc_scale)
                stage = None
            else:
                output = _calibrated(float_outputs[index], act_format, options, where)
                multiplier, shift = _requant_params(acc_scale / output.scale, options.mult_bits)
                floor = output.zero_point if activation == "relu" else act_format.min_value
                stage = Requant(multiplier, shift, options.mult_bits, output.zero_point,
                                max(floor, act_format.min_value), act_format.max_value)
        layers.append(_ir_layer(float_layer, layer_name, codes, codebook,
                                weight_format=weight_format, weight_scale=weight_scale,
                                bias=bias, input=tensor, output=output, stage=stage,
                                activation=activation))
        tensor = output
    info = {"source": network.info, "options": {
        key: getattr(options, key) for key in QuantOptions.__dataclass_fields__}}
    return Network(name, tuple(layers), info)
