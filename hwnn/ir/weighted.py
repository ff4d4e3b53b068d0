"""What the layer kinds with weights (:class:`~hwnn.ir.Dense`, :class:`~hwnn.ir.Conv2d`) share:
the checks of their common members and their common part of a network file.

Those members are ``name``, ``weights`` (int64 codes of ``weight_format``, output channels on
the first axis), ``weight_format``, ``weight_scale`` (one real scale per output channel),
``bias`` (one int64 per output channel, in the accumulator domain), ``input`` and ``output``
(:class:`~hwnn.ir.tensors.TensorFormat`; the input's scale is per tensor), ``stage`` and
``activation`` (the name of the real activation the stage implements, documentation only).
"""

from .checks import expect_keys, float_array, int_array
from .formats import Format
from .stages import stage_array_keys, stage_from_file, stage_header_keys, stage_to_file
from .tensors import TensorFormat

__all__ = ["check_weighted", "weighted_fields", "weighted_file"]


def check_weighted(layer, where, weights):
    """Check ``layer``'s common members (``where`` names it in messages) once its kind has
    checked the shape of ``weights`` (its weights as int64), and store them normalized."""
    if not isinstance(layer.weight_format, Format):
        raise TypeError(f"{where} weight_format must be a Format, not {layer.weight_format!r}")
    if not layer.weight_format.contains(weights):
        raise ValueError(f"{where} weights are outside their format {layer.weight_format}")
    channels = weights.shape[0]
    weight_scale = float_array(layer.weight_scale, f"{where} weight_scale")
    if weight_scale.shape != (channels,):
        raise ValueError(f"{where} weight_scale must have {channels} entries, not shape "
                         f"{weight_scale.shape}")
    bias = int_array(layer.bias, f"{where} bias", 1)
    if bias.shape != (channels,):
        raise ValueError(f"{where} bias must have {channels} entries, not shape {bias.shape}")
    for port in ("input", "output"):
        if not isinstance(getattr(layer, port), TensorFormat):
            raise TypeError(f"{where} {port} must be a TensorFormat, not "
                            f"{getattr(layer, port)!r}")
    if layer.input.scale.ndim != 0:
        raise ValueError(f"{where} input scale must be per tensor (a scalar)")
    if layer.output.scale.ndim == 1 and layer.output.scale.shape != (channels,):
        raise ValueError(f"{where} output scale must have {channels} entries")
    if not isinstance(layer.activation, str):
        raise TypeError(f"{where} activation must be a string, not {layer.activation!r}")
    object.__setattr__(layer, "weights", weights)
    object.__setattr__(layer, "weight_scale", weight_scale)
    object.__setattr__(layer, "bias", bias)


def weighted_file(layer) -> tuple[dict, dict]:
    """The header entries and arrays of ``layer``'s common members in a network file."""
    stage_header, stage_arrays = stage_to_file(layer.stage)
    header = {"name": layer.name, "activation": layer.activation,
              "weight_format": str(layer.weight_format),
              "input": layer.input.to_header(), "output": layer.output.to_header()}
    arrays = {"weights": layer.weights, "weight_scale": layer.weight_scale, "bias": layer.bias,
              "input_scale": layer.input.scale, "output_scale": layer.output.scale}
    return header | stage_header, arrays | stage_arrays


def weighted_fields(header, arrays, header_keys=frozenset(), array_keys=frozenset()) -> dict:
    """The common members (as keyword arguments) of a layer entry whose ``header`` and
    ``arrays`` hold exactly the common keys, its stage's, and the kind's own ``header_keys``
    and ``array_keys`` (a ValueError naming the missing and unexpected keys otherwise)."""
    expect_keys(header, {"name", "activation", "weight_format", "input", "output"}
                | stage_header_keys(header) | header_keys, "layer header")
    expect_keys(arrays, {"weights", "weight_scale", "bias", "input_scale", "output_scale"}
                | stage_array_keys(header) | array_keys, "layer arrays")
    return {"name": header["name"], "weights": arrays["weights"],
            "weight_format": Format.parse(header["weight_format"]),
            "weight_scale": arrays["weight_scale"], "bias": arrays["bias"],
            "input": TensorFormat.from_header(header["input"], arrays["input_scale"], "input"),
            "output": TensorFormat.from_header(header["output"], arrays["output_scale"],
                                               "output"),
            "stage": stage_from_file(header, arrays), "activation": header["activation"]}
