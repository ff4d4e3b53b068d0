"""Layer kinds (hwnn.ir.layer): the protocol, the registry, chaining by shape, the file and the
golden model's dispatch, shown with a toy kind registered here as a new kind would be."""

import json
import re
import zipfile
from dataclasses import dataclass, replace

import numpy as np
import pytest

from hwnn.ir import LAYER_KINDS, Dense, Layer, Network, TensorFormat, Thresholds, layer_kind
from hwnn.ir.checks import expect_keys, int_array
from hwnn.ir.formats import Format
from hwnn.ir.stages import stage_array_keys, stage_from_file, stage_header_keys, stage_to_file
from hwnn.sim.golden import accumulate, run_network

INT4, INT8, UINT4 = Format.int(4), Format.int(8), Format.uint(4)


@dataclass(frozen=True, eq=False)
class _Gain(Layer):
    """Toy layer: ``acc[..., c] = gain[c] * x[..., c]`` on a tensor of any ``shape``."""
    name:   str
    shape:  tuple
    gain:   np.ndarray
    input:  TensorFormat
    output: TensorFormat
    stage:  Thresholds | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "gain", int_array(self.gain, "gain", 1))
        self._check_stage(f"Layer {self.name!r}")

    @property
    def input_shape(self):
        return self.shape

    @property
    def output_shape(self):
        return self.shape

    @property
    def acc_range(self):
        ends = self.gain[:, None] * [self.input.format.min_value, self.input.format.max_value]
        return ends.min(axis=1), ends.max(axis=1)

    @property
    def weight_bits(self):
        return 0

    def header_and_arrays(self):
        stage_header, stage_arrays = stage_to_file(self.stage)
        return ({"name": self.name, "shape": list(self.shape), "input": self.input.to_header(),
                 "output": self.output.to_header()} | stage_header,
                {"gain": self.gain, "input_scale": self.input.scale,
                 "output_scale": self.output.scale} | stage_arrays)

    @classmethod
    def from_header_and_arrays(cls, header, arrays):
        expect_keys(header, {"name", "shape", "input", "output"} | stage_header_keys(header),
                    "layer header")
        expect_keys(arrays, {"gain", "input_scale", "output_scale"} | stage_array_keys(header),
                    "layer arrays")
        return cls(header["name"], header["shape"], arrays["gain"],
                   TensorFormat.from_header(header["input"], arrays["input_scale"], "input"),
                   TensorFormat.from_header(header["output"], arrays["output_scale"], "output"),
                   stage_from_file(header, arrays))


@layer_kind("gain")
class Gain(_Gain):
    """The toy kind with a golden function."""


@accumulate.register
def _gain_accumulate(layer: Gain, codes):
    return np.asarray(codes, dtype=np.int64) * layer.gain


@layer_kind("unrun")
class Unrun(_Gain):
    """The toy kind without a golden function."""


def _tensor(fmt):
    return TensorFormat(fmt, 1.0)


def _gain(name, shape, gain, stage=None, out=INT8, inp=INT4):
    return Gain(name, shape, gain, _tensor(inp), _tensor(out), stage)


def _dense(name, weights, in_format=INT8):
    weights = np.asarray(weights)
    return Dense(name, weights, INT4, np.ones(len(weights)), np.zeros(len(weights), int),
                 _tensor(in_format), _tensor(Format.int(16)), None)


# The protocol ---------------------------------------------------------------------------------

def test_dense_implements_the_protocol():
    dense = _dense("d", [[1, 2, 3], [-1, 0, 1]])
    assert LAYER_KINDS["dense"] is Dense and dense.kind == "dense"
    assert (dense.input_shape, dense.output_shape, dense.channels) == ((3,), (2,), 2)
    lo, hi = dense.acc_range                      # int8 inputs, weights (1, 2, 3), (-1, 0, 1)
    assert (lo.tolist(), hi.tolist()) == ([-768, -255], [762, 255])
    assert (dense.acc_bits, dense.threshold_bits, dense.weight_bits) == (11, 11, 6 * 4)
    assert dense.stage_name == "accumulator"


def test_toy_kind_derives_the_rest_of_the_protocol():
    layer = _gain("g", (2, 3), [1, -3, 5], Thresholds([[0], [0], [20]], [False, True, False]),
                  Format.binary())
    assert (layer.kind, layer.channels, layer.stage_name) == ("gain", 3, "thresholds")
    assert [bound.tolist() for bound in layer.acc_range] == [[-8, -21, -40], [7, 24, 35]]
    assert (layer.acc_bits, layer.threshold_bits) == (7, 7)
    # The stage is checked against the kind's channels and accumulator range.
    with pytest.raises(ValueError, match=r"^Layer 'g' needs 3 x 1 thresholds for binary "
                                         r"outputs, not 2 x 1$"):
        _gain("g", (2, 3), [1, -3, 5], Thresholds([[0], [0]], [False, False]), Format.binary())
    with pytest.raises(ValueError, match=r"^Layer 'g' outputs its accumulator, so its output "
                                         r"format must be int7 or wider, not int4$"):
        _gain("g", (3,), [1, -3, 5], out=INT4)


# Chaining by shape ----------------------------------------------------------------------------

def test_network_chains_kinds_by_shape_and_format():
    network = Network("n", (_gain("g0", (2, 3), [1, 2, 3]),
                            _gain("g1", (2, 3), [1, 1, 1], out=Format.int(16), inp=INT8)))
    assert (network.input_shape, network.output_shape) == ((2, 3), (2, 3))
    assert (network.in_features, network.out_features) == (6, 6)
    mixed = Network("m", (_gain("g", (4,), [1, 2, 3, 4]), _dense("d", np.ones((2, 4), int))))
    assert (mixed.input_shape, mixed.output_shape, mixed.in_features) == ((4,), (2,), 4)


def test_network_flattens_a_tensor_for_a_layer_that_takes_a_vector():
    network = Network("n", (_gain("g", (2, 3), [1, 2, 3]), _dense("d", np.ones((2, 6), int))))
    assert (network.input_shape, network.output_shape) == ((2, 3), (2,))
    outputs, traces = run_network(network, np.arange(6).reshape(2, 3), trace=True)
    assert traces[0].acc.shape == (2, 3)
    assert outputs.tolist() == [0 + 2 + 6 + 3 + 8 + 15] * 2


def test_network_refuses_shapes_that_do_not_meet():
    with pytest.raises(ValueError, match=r"^Layer 'd' takes 4 inputs but layer 'g' gives 2x3$"):
        Network("n", (_gain("g", (2, 3), [1, 2, 3]), _dense("d", np.ones((2, 4), int))))
    # Equal sizes are not enough unless the layer takes a vector: the shapes must be equal.
    with pytest.raises(ValueError, match=r"^Layer 'g1' takes 3x2 inputs but layer 'g0' gives "
                                         r"2x3$"):
        Network("n", (_gain("g0", (2, 3), [1, 2, 3]), _gain("g1", (3, 2), [1, 2], out=INT8)))
    with pytest.raises(ValueError, match=r"^Layer 'g1' takes 6x1 inputs but layer 'g0' gives "
                                         r"2x3$"):
        Network("n", (_gain("g0", (2, 3), [1, 2, 3]), _gain("g1", (6, 1), [1], out=INT8)))


def test_network_refuses_unregistered_layer_classes():
    layer = _Gain("g", (2,), [1, 2], _tensor(INT4), _tensor(INT8))
    with pytest.raises(TypeError, match=r"^Network layers must be IR layers, not _Gain\("):
        Network("n", (layer,))


# The file -------------------------------------------------------------------------------------

def test_toy_kind_round_trips_through_the_file(tmp_path):
    stage = Thresholds([[0], [0], [20]], [False, True, False])
    network = Network("toy", (_gain("g0", (3,), [1, -3, 5], stage, Format.binary()),
                              replace(_dense("d", [[1, 0, -1], [2, 1, 1]]),
                                      input=_tensor(Format.binary()))))
    path = network.save(tmp_path / "toy.hwnn.npz")
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read("header.json"))
    assert [entry["kind"] for entry in header["layers"]] == ["gain", "dense"]
    assert header["layers"][0]["shape"] == [3]
    loaded = Network.load(path)
    assert [type(layer) for layer in loaded.layers] == [Gain, Dense]
    first = loaded.layers[0]
    assert (first.name, first.shape, first.gain.tolist()) == ("g0", (3,), [1, -3, 5])
    assert (first.input, first.output) == (network.layers[0].input, network.layers[0].output)
    assert np.array_equal(first.stage.values, stage.values)
    assert np.array_equal(first.stage.descending, stage.descending)
    assert np.array_equal(loaded.layers[1].weights, network.layers[1].weights)
    assert loaded.save(tmp_path / "again.hwnn.npz").read_bytes() == path.read_bytes()


def test_unknown_kinds_in_a_file_are_refused(tmp_path):
    path = Network("n", (_dense("d", [[1, 2]]),)).save(tmp_path / "n.hwnn.npz")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(members["header.json"])
    header["layers"][0]["kind"] = "lstm"
    members["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=rf"^'{re.escape(str(path))}' is not a valid hwnn "
                                         rf"network: layer 0 has unknown kind 'lstm'; this hwnn "
                                         rf"reads 'conv2d', 'dense', 'gain', 'maxpool2d', "
                                         rf"'unrun' \(a newer hwnn may read it\)$"):
        Network.load(path)


# The registry ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["Dense", "2d", "", "conv-2d", 3, None])
def test_layer_kind_names_are_lower_case_identifiers(kind):
    with pytest.raises(ValueError, match=rf"^Layer kind must be a lower-case identifier, not "
                                         rf"{re.escape(repr(kind))}$"):
        layer_kind(kind)


def test_layer_kind_refuses_a_taken_name_and_non_layers():
    with pytest.raises(ValueError, match=r"^Layer kind 'dense' is already registered to Dense$"):
        layer_kind("dense")
    with pytest.raises(TypeError, match=r"^Layer kind 'other' must be a class implementing "
                                        r"Layer, not <class 'int'>$"):
        layer_kind("other")(int)

    class Partial(Layer):
        """Misses every abstract member."""
    with pytest.raises(TypeError, match=r"^Layer kind 'other' must be a class implementing "
                                        r"Layer, not <class '.*Partial'>$"):
        layer_kind("other")(Partial)
    assert "other" not in LAYER_KINDS
    with pytest.raises(TypeError):
        LAYER_KINDS["other"] = Partial           # read-only: register with @layer_kind


# The golden model -----------------------------------------------------------------------------

def test_golden_model_runs_each_kind_with_its_function():
    network = Network("n", (_gain("g", (3,), [2, -1, 3]), _dense("d", [[1, 1, 1], [0, 1, -1]])))
    outputs, traces = run_network(network, [[1, 2, 3], [-8, 7, 0]], trace=True)
    assert traces[0].acc.tolist() == [[2, -2, 9], [-16, -7, 0]]
    assert outputs.tolist() == [[9, -11], [-23, -7]]


def test_golden_model_takes_inputs_of_the_network_shape():
    network = Network("n", (_gain("g", (2, 3), [1, 2, 3]),))
    codes = np.arange(-3, 3).reshape(2, 3)
    assert run_network(network, codes).tolist() == [[-3, -4, -3], [0, 2, 6]]
    assert run_network(network, codes[None]).tolist() == [[[-3, -4, -3], [0, 2, 6]]]
    with pytest.raises(ValueError, match=r"^Input codes must have shape \(2, 3\) or "
                                         r"\(N, 2, 3\) or \(N, 6\), not \(6,\)$"):
        run_network(network, codes.ravel())


def test_golden_model_refuses_kinds_without_a_function():
    network = Network("n", (Unrun("u", (2,), [1, 2], _tensor(INT4), _tensor(INT8)),))
    with pytest.raises(TypeError, match=r"^The golden model has no function for layer kind "
                                        r"'unrun' \(Unrun\): register one with "
                                        r"@hwnn\.sim\.golden\.accumulate\.register$"):
        run_network(network, [1, 2])
