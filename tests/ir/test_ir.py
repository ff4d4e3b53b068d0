"""The quantized-network IR (hwnn.ir): validation, accumulator bounds and the file."""

import io
import json
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hwnn.ir import Dense, Network, Requant, TensorFormat, Thresholds, accumulator_range
from hwnn.ir.formats import Format
from hwnn.sim.golden import dense_accumulate

BINARY, TERNARY = Format.binary(), Format.ternary()
INT4, INT8, UINT8 = Format.int(4), Format.int(8), Format.uint(8)


def _sorted_thresholds(rng, lo, hi, count, descending):
    values = np.sort(rng.integers(lo[:, None] - 1, hi[:, None] + 2, (len(lo), count)), axis=1)
    values[:, 0], values[:, -1] = lo - 1, hi + 1
    return np.where(descending[:, None], values[:, ::-1], values)


def mixed_network(seed=0, info=None):
    """Four layers: thresholds to binary, thresholds to int4, requant to uint8, accumulator."""
    rng = np.random.default_rng(seed)
    uint8_in = TensorFormat(UINT8, 0.01)
    binary = TensorFormat(BINARY, 1.0)
    int4 = TensorFormat(INT4, 0.5)
    uint8_mid = TensorFormat(UINT8, 0.02, 3)
    out = TensorFormat(Format.int(16), [0.1, 0.3])

    w0 = np.array([[1, 0, -1, 1], [-1, 1, 1, 0], [0, -1, 1, 1]])
    l0 = Dense("l0", w0, TERNARY, [0.5, 0.25, 1.0], [3, -2, 0], uint8_in, binary,
               Thresholds([[10], [-5], [100]], [False, True, False]), "sign")
    w1 = np.array([[1, -1, 1], [-1, -1, 1], [1, 1, 1], [-1, 1, -1]])
    b1 = np.array([0, 1, -1, 2])
    lo, hi = accumulator_range(w1, b1, BINARY)
    down = np.array([True, False, False, True])
    l1 = Dense("l1", w1, BINARY, [1.0, 2.0, 0.5, 0.75], b1, binary, int4,
               Thresholds(_sorted_thresholds(rng, lo, hi, 15, down), down), "hardtanh")
    w2 = rng.integers(-128, 128, (5, 4))
    l2 = Dense("l2", w2, INT8, rng.uniform(0.01, 0.1, 5), rng.integers(-50, 51, 5), int4,
               uint8_mid, Requant(rng.integers(0, 4096, 5), rng.integers(0, 21, 5), 12, 3, 3,
                                  255), "relu")
    w3 = rng.integers(-8, 8, (2, 5))
    l3 = Dense("l3", w3, INT4, [0.1 / 0.02, 0.3 / 0.02], [-7, 12], uint8_mid, out, None)
    return Network("mixed", (l0, l1, l2, l3),
                   {"source": {"frontend": "test"}, "values": [1, 2.5, None]}
                   if info is None else info)


def assert_same_network(a: Network, b: Network):
    assert (a.name, a.info, len(a.layers)) == (b.name, b.info, len(b.layers))
    for x, y in zip(a.layers, b.layers, strict=True):
        assert type(x) is type(y)
        assert (x.name, x.activation, x.weight_format, x.input, x.output) == \
            (y.name, y.activation, y.weight_format, y.input, y.output)
        for key in ("weights", "weight_scale", "bias"):
            assert getattr(x, key).dtype == getattr(y, key).dtype
            assert np.array_equal(getattr(x, key), getattr(y, key))
        assert np.array_equal(x.input.scale, y.input.scale)
        assert np.array_equal(x.output.scale, y.output.scale)
        assert type(x.stage) is type(y.stage)
        if isinstance(x.stage, Thresholds):
            assert np.array_equal(x.stage.values, y.stage.values)
            assert np.array_equal(x.stage.descending, y.stage.descending)
            assert y.stage.values.dtype == np.int64 and y.stage.descending.dtype == np.bool_
        elif isinstance(x.stage, Requant):
            for key in ("mult_bits", "zero_point", "lo", "hi"):
                assert getattr(x.stage, key) == getattr(y.stage, key)
            assert np.array_equal(x.stage.multiplier, y.stage.multiplier)
            assert np.array_equal(x.stage.shift, y.stage.shift)


# Files ----------------------------------------------------------------------------------------

#: A version-1 file written by hwnn 898661d (before the IR left ``hwnn.quant``) from
#: :func:`version1_network`, with ``python tests/ir/test_ir.py``. Keep it as it is: a file
#: format change bumps the version, and version-1 files must still load.
VERSION1_FILE = Path(__file__).parent / "data" / "mixed-v1.hwnn.npz"


def version1_network():
    """:func:`mixed_network` with a codebook on layer ``l2``: every stage, an optional array."""
    network = mixed_network()
    l2 = network.layers[2]
    l2 = replace(l2, codebook=np.unique(l2.weights[l2.weights != 0]))
    return Network(network.name, (*network.layers[:2], l2, network.layers[3]), network.info)


def test_version1_files_load(tmp_path):
    loaded = Network.load(VERSION1_FILE)
    expected = version1_network()
    assert_same_network(loaded, expected)
    assert np.array_equal(loaded.layers[2].codebook, expected.layers[2].codebook)
    assert [layer.codebook for layer in (loaded.layers[0], loaded.layers[1], loaded.layers[3])] \
        == [None, None, None]
    # The format is unchanged: the same network still gives the same bytes.
    assert loaded.save(tmp_path / "again.hwnn.npz").read_bytes() == VERSION1_FILE.read_bytes()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_is_exact(tmp_path, seed):
    network = mixed_network(seed)
    path = network.save(tmp_path / "sub" / "dir" / "net.hwnn.npz")
    assert path == tmp_path / "sub" / "dir" / "net.hwnn.npz"
    loaded = Network.load(path)
    assert_same_network(network, loaded)
    assert [layer.stage_name for layer in loaded.layers] == \
        ["thresholds", "thresholds", "requant", "accumulator"]
    assert [str(layer.weight_format) for layer in loaded.layers] == \
        ["ternary", "binary", "int8", "int4"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["net.hwnn.npz"]   # no temp files


def test_round_trip_of_single_layer_networks(tmp_path):
    for index, layer in enumerate(mixed_network().layers):
        network = Network(f"single{index}", (layer,))
        assert_same_network(network, Network.load(network.save(tmp_path / f"{index}.npz")))


def test_same_network_gives_identical_bytes(tmp_path):
    first = mixed_network().save(tmp_path / "a.hwnn.npz").read_bytes()
    again = mixed_network().save(tmp_path / "b.hwnn.npz").read_bytes()
    resaved = Network.load(tmp_path / "a.hwnn.npz").save(tmp_path / "c.hwnn.npz").read_bytes()
    assert first == again == resaved
    assert mixed_network(1).save(tmp_path / "d.hwnn.npz").read_bytes() != first


def test_save_overwrites(tmp_path):
    path = tmp_path / "net.hwnn.npz"
    mixed_network(1).save(path)
    mixed_network(0).save(path)
    assert_same_network(Network.load(path), mixed_network(0))


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _array(members, name):
    return np.load(io.BytesIO(members[name]))


def _edit_header(edit):
    def change(members):
        header = json.loads(members["header.json"])
        edit(header)
        members["header.json"] = json.dumps(header).encode()
    return change


def _set_array(name, value):
    def change(members):
        members[name] = _npy(value(_array(members, name)) if callable(value) else value)
    return change


def _drop(name):
    def change(members):
        del members[name]
    return change


def _add(name, data):
    def change(members):
        members[name] = data
    return change


def _declaring(shape, data=b"\0" * 64, descr="<i8"):
    """An .npy member whose header declares ``shape`` of ``descr``, followed by ``data``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue() + data


def _unsorted(values):
    values = values.copy()
    values[1, 0] = values[1, -1] + 1                       # channel 1 rises
    return values


def _wider(weights):
    return np.concatenate([weights, weights[:, :1]], axis=1)


TAMPERED = [
    (_drop("header.json"), r"it has no header\.json"),
    (_add("header.json", b"{not json"), r"Expecting property name"),
    (_add("header.json", b"[1, 2]"), r"header must be a mapping, not list"),
    (_edit_header(lambda h: h.pop("info")), r"header is inconsistent: missing info"),
    (_edit_header(lambda h: h.update(extra=1)), r"header is inconsistent: unexpected extra"),
    (_edit_header(lambda h: h.update(kind="other")),
     r"its kind is 'other', not 'hwnn-network'"),
    (_edit_header(lambda h: h.update(version=2)), r"its version is 2; this hwnn reads version 1"),
    (_edit_header(lambda h: h.update(layers={})), r"its layer list is not a list"),
    (_drop("layer1/bias.npy"), r"layer arrays is inconsistent: missing bias"),
    (_drop("layer2/shift.npy"), r"layer arrays is inconsistent: missing shift"),
    (_add("layer0/junk.npy", _npy(np.zeros(2))), r"layer arrays is inconsistent: unexpected junk"),
    (_add("layer0/shift.npy", _npy(np.zeros(3, dtype=np.int64))),
     r"layer arrays is inconsistent: unexpected shift"),
    (_add("layer7/weights.npy", _npy(np.zeros((1, 1)))), r"arrays of unknown layers: layer7"),
    (_add("notes.txt", b"hello"), r"unexpected member 'notes\.txt'"),
    (_add("layer0/weights.npy", _npy(np.array([None], dtype=object))),
     r"member 'layer0/weights\.npy' holds Python objects, not numbers$"),
    # Shapes are checked against the member's size before any array is allocated.
    (_add("layer0/weights.npy", _declaring((10**7, 10**7))),
     (r"member 'layer0/weights\.npy' declares int64 values of shape \(10000000, 10000000\) "
      r"\(800000000000000 bytes\) but holds 64 bytes$")),
    (_add("layer0/bias.npy", _declaring((2**62, 4), descr="<f8")),
     (r"member 'layer0/bias\.npy' declares float64 values of shape \(4611686018427387904, 4\) "
      r"\(147573952589676412928 bytes\) but holds 64 bytes$")),
    (_add("layer0/bias.npy", _declaring((3,), data=b"\0" * 25)),
     (r"member 'layer0/bias\.npy' declares int64 values of shape \(3,\) \(24 bytes\) but "
      r"holds 25 bytes$")),
    (_add("layer0/bias.npy", b"\x93NUMPY\x03\x00" + b"\0" * 20),
     r"member 'layer0/bias\.npy' has \.npy format version \(3, 0\), not 1\.0 or 2\.0$"),
    (_set_array("layer0/weights.npy", lambda w: np.where(w == 1, 2, w)),
     r"Layer 'l0' weights are outside their format ternary"),
    (_set_array("layer0/weights.npy", lambda w: w.astype(np.float64)),
     r"Layer 'l0' weights must hold integers, not float64 values"),
    (_set_array("layer1/weights.npy", lambda w: np.where(w == 1, 0, w)),
     r"Layer 'l1' weights are outside their format binary"),
    (_set_array("layer1/thresholds.npy", _unsorted),
     r"Thresholds of channel 1 are not sorted in its direction"),
    (_set_array("layer1/descending.npy", np.zeros(4, dtype=bool)),
     r"Thresholds of channel 0 are not sorted in its direction"),
    (_set_array("layer1/descending.npy", np.zeros(4, dtype=np.int64)),
     r"Threshold directions must be 4 booleans, not int64 of shape \(4,\)"),
    (_set_array("layer1/thresholds.npy", lambda t: t[:, :-1]),
     r"Layer 'l1' needs 4 x 15 thresholds for int4 outputs, not 4 x 14"),
    (_set_array("layer0/thresholds.npy", np.array([[10], [-5], [10**6]])),
     r"Layer 'l0' thresholds lie outside the accumulator range"),
    (_set_array("layer1/weights.npy", _wider), r"Layer 'l1' takes 4 inputs but layer 'l0' gives 3"),
    (_edit_header(lambda h: h["layers"][1]["input"].update(format="int4")),
     r"Layer 'l1' expects inputs int4 x 1 but layer 'l0' gives binary x 1"),
    (_set_array("layer2/input_scale.npy", np.array(0.25)),
     r"Layer 'l2' expects inputs int4 x 0\.25 but layer 'l1' gives int4 x 0\.5"),
    (_edit_header(lambda h: h["layers"][3]["input"].update(zero_point=0)),
     r"Layer 'l3' expects inputs uint8 x 0\.02 but layer 'l2' gives uint8 x 0\.02 zp 3"),
    (_edit_header(lambda h: h["layers"][0].update(stage="lut")), r"unknown output stage 'lut'"),
    (_edit_header(lambda h: h["layers"][0].update(kind="conv")),
     r"layer 0 has unknown kind 'conv'"),
    (_edit_header(lambda h: h["layers"][0].update(colour="red")),
     r"layer header is inconsistent: unexpected colour"),
    (_edit_header(lambda h: h["layers"][0].update(weight_format="float8")),
     r"Unknown number format 'float8'"),
    (_edit_header(lambda h: h["layers"][2]["requant"].pop("lo")),
     r"requant header is inconsistent: missing lo"),
    (_edit_header(lambda h: h["layers"][2]["requant"].update(hi=300)),
     r"Layer 'l2' requantization clamp \[3, 300\] exceeds the output format uint8"),
    (_edit_header(lambda h: h["layers"][2]["requant"].update(mult_bits=40)),
     r"mult_bits must be 1\.\.32, not 40"),
    (_edit_header(lambda h: h["layers"][2]["requant"].update(zero_point=4)),
     r"Layer 'l2' requantization zero point 4 is not its output's zero point 3"),
    (_edit_header(lambda h: h["layers"][3]["output"].update(format="int4")),
     (r"Layer 'l3' outputs its accumulator, so its output format must be int\d+ or wider, "
      r"not int4")),
]


@pytest.mark.parametrize("change, message", TAMPERED)
def test_load_refuses_inconsistent_files(tmp_path, change, message):
    path = mixed_network().save(tmp_path / "good.hwnn.npz")
    members = _members(path)
    change(members)
    bad = tmp_path / "bad.hwnn.npz"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=rf"^'{re.escape(str(bad))}' is not a valid hwnn "
                                         rf"network: {message}"):
        Network.load(bad)


def test_load_refuses_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^No network file at '.*missing\.hwnn\.npz'$"):
        Network.load(tmp_path / "missing.hwnn.npz")
    with pytest.raises(FileNotFoundError, match=r"^No network file at "):
        Network.load(tmp_path)                             # a directory is no file either


@pytest.mark.parametrize("keep", [0, 1, 21, 0.5, -22, -1])
def test_load_refuses_a_truncated_file(tmp_path, keep):
    data = mixed_network().save(tmp_path / "good.hwnn.npz").read_bytes()
    cut = tmp_path / "cut.hwnn.npz"
    cut.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(ValueError, match=r"^'.*cut\.hwnn\.npz' is not a valid hwnn network: "):
        Network.load(cut)


def test_load_refuses_a_non_zip(tmp_path):
    path = tmp_path / "text.hwnn.npz"
    path.write_text("just some text, not a network\n")
    with pytest.raises(ValueError, match=r"is not a valid hwnn network: File is not a zip file$"):
        Network.load(path)


def test_load_refuses_a_bad_crc(tmp_path):
    members = _members(mixed_network().save(tmp_path / "good.hwnn.npz"))
    stored = tmp_path / "stored.hwnn.npz"
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert_same_network(Network.load(stored), mixed_network())   # stored members are fine
    data = bytearray(stored.read_bytes())
    weights = members["layer2/weights.npy"]
    offset = bytes(data).index(weights) + len(weights) - 3  # inside the weight values
    data[offset] ^= 0x01
    stored.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"is not a valid hwnn network: Bad CRC-32 for file "
                                         r"'layer2/weights\.npy'$"):
        Network.load(stored)


def test_every_corrupted_byte_is_refused_or_harmless(tmp_path):
    """Flipping any single byte either makes load raise ValueError or changes nothing that
    matters (timestamps, attributes): never a silently different network."""
    network = Network("tiny", mixed_network().layers[:1], {"k": 1})
    data = network.save(tmp_path / "good.hwnn.npz").read_bytes()
    bad = tmp_path / "bad.hwnn.npz"
    refused = 0
    for offset in range(len(data)):
        corrupt = bytearray(data)
        corrupt[offset] ^= 0xFF
        bad.write_bytes(bytes(corrupt))
        try:
            loaded = Network.load(bad)
        except ValueError:
            refused += 1
        else:
            assert_same_network(network, loaded)
    assert refused > len(data) // 2


def test_info_round_trips_as_json(tmp_path):
    info = {"source": {"frontend": "npz", "file": "m.npz"}, "accuracy": 0.9731,
            "classes": [0, 1, 2], "none": None, "flag": True}
    loaded = Network.load(mixed_network(info=info).save(tmp_path / "n.hwnn.npz"))
    assert loaded.info == info


# Validation -----------------------------------------------------------------------------------

def _dense(**changes):
    kwargs = dict(name="d", weights=[[1, -2], [3, 0]], weight_format=INT4, weight_scale=[1.0, 2.0],
                  bias=[5, -1], input=TensorFormat(Format.uint(2), 1.0),
                  output=TensorFormat(Format.int(8), [1.0, 2.0]), stage=None)
    return Dense(**(kwargs | changes))


@pytest.mark.parametrize("changes, error, message", [
    ({"bias": [1, 2, 3]}, ValueError, r"^Layer 'd' bias must have 2 entries, not shape \(3,\)$"),
    ({"bias": [1.0, 2.0]}, TypeError, r"^Layer 'd' bias must hold integers, not float64 values$"),
    ({"weight_scale": [1.0]},
     ValueError, r"^Layer 'd' weight_scale must have 2 entries, not shape \(1,\)$"),
    ({"weight_scale": [1.0, 0.0]}, ValueError, (r"^Layer 'd' weight_scale must be finite and "
                                                r"positive$")),
    ({"weights": [[1, -2], [3, 8]]},
     ValueError, r"^Layer 'd' weights are outside their format int4$"),
    ({"weights": [1, 2]}, ValueError, (r"^Layer 'd' weights must be 2-dimensional, not shape "
                                       r"\(2,\)$")),
    ({"weights": np.zeros((0, 2), dtype=int), "weight_scale": [], "bias": [],
      "output": TensorFormat(Format.int(8), 1.0)},
     ValueError, r"^Layer 'd' has an empty weight matrix of shape \(0, 2\)$"),
    ({"weight_format": "int4"}, TypeError, (r"^Layer 'd' weight_format must be a Format, not "
                                            r"'int4'$")),
    ({"name": ""}, ValueError, r"^Layer name must be an identifier .*, not ''$"),
    ({"name": 7}, TypeError, r"^Layer name must be a string, not 7$"),
    ({"input": TensorFormat(Format.uint(2), [1.0, 1.0])},
     ValueError, r"^Layer 'd' input scale must be per tensor \(a scalar\)$"),
    ({"output": TensorFormat(Format.int(8), [1.0, 2.0, 3.0])},
     ValueError, r"^Layer 'd' output scale must have 2 entries$"),
    ({"output": "int8"}, TypeError, r"^Layer 'd' output must be a TensorFormat, not 'int8'$"),
    ({"activation": None}, TypeError, r"^Layer 'd' activation must be a string, not None$"),
    # The accumulator spans [-6, 9] (see test_acc_range_by_hand): it needs int5.
    ({"output": TensorFormat(Format.int(4), 1.0)},
     ValueError, (r"^Layer 'd' outputs its accumulator, so its output format must be int5 or "
                  r"wider, not int4$")),
    ({"output": TensorFormat(Format.uint(8), 1.0)},
     ValueError, (r"^Layer 'd' outputs its accumulator, so its output format must be int5 or "
                  r"wider, not uint8$")),
    ({"output": TensorFormat(Format.uint(8), 1.0), "stage": Requant([1, 1], [0, 0], 8, 0, 0, 300)},
     ValueError, r"^Layer 'd' requantization clamp \[0, 300\] exceeds the output format uint8$"),
    ({"output": TensorFormat(Format.int(4), 1.0), "stage": Requant([1, 1], [0, 0], 8, 0, -9, 7)},
     ValueError, r"^Layer 'd' requantization clamp \[-9, 7\] exceeds the output format int4$"),
    ({"output": TensorFormat(BINARY, 1.0), "stage": Requant([1, 1], [0, 0], 8, 0, -1, 1)},
     ValueError, r"^Layer 'd' requantization needs an int output format, not binary$"),
    ({"output": TensorFormat(UINT8, 1.0), "stage": Requant([1], [0], 8, 0, 0, 255)},
     ValueError, r"^Layer 'd' needs 2 requantization multipliers$"),
    ({"output": TensorFormat(UINT8, 1.0, 5), "stage": Requant([1, 1], [0, 0], 8, 0, 0, 255)},
     ValueError, r"^Layer 'd' requantization zero point 0 is not its output's zero point 5$"),
    # hi = (2**31 - 1) * 255 + 5 < 2**39: a 40-bit accumulator, 72 bits with the multiplier.
    ({"output": TensorFormat(UINT8, 1.0), "stage": Requant([1, 1], [0, 0], 32, 0, 0, 255),
      "weights": [[2**31 - 1, 0], [0, 1]], "weight_format": Format.int(32),
      "input": TensorFormat(UINT8, 1.0)},
     ValueError, r"^Layer 'd' accumulator x multiplier needs 72 bits, more than 63$"),
    ({"output": TensorFormat(Format.uint(2), 1.0), "stage": Thresholds([[0], [1]], [False, True])},
     ValueError, r"^Layer 'd' needs 2 x 3 thresholds for uint2 outputs, not 2 x 1$"),
    ({"output": TensorFormat(BINARY, 1.0), "stage": Thresholds([[-8], [10]], [False, True])},
     ValueError, r"^Layer 'd' thresholds lie outside the accumulator range$"),
    ({"output": TensorFormat(BINARY, 1.0), "stage": Thresholds([[9], [11]], [False, True])},
     ValueError, r"^Layer 'd' thresholds lie outside the accumulator range$"),
    ({"stage": "thresholds"},
     TypeError, r"^Layer 'd' stage must be Thresholds, Requant or None, not 'thresholds'$"),
])
def test_dense_rejects(changes, error, message):
    with pytest.raises(error, match=message):
        _dense(**changes)


def test_dense_accepts_thresholds_at_the_widened_bounds():
    layer = _dense(output=TensorFormat(BINARY, 1.0), stage=Thresholds([[-7], [10]], [True, False]))
    assert layer.stage_name == "thresholds"


@pytest.mark.parametrize("weights, fmt", [
    ([[2**31 - 1, 2**31 - 1, 4]], Format.uint(32)),       # int64 sums would wrap to 2**32 - 2
    ([[-2**31] * 4], Format.int(32)),
])
def test_dense_rejects_accumulators_beyond_62_bits(weights, fmt):
    with pytest.raises(ValueError, match=r"^Layer 'd' accumulator needs more than 62 bits$"):
        _dense(weights=weights, weight_format=Format.int(32), weight_scale=[1.0], bias=[0],
               input=TensorFormat(fmt, 1.0), output=TensorFormat(Format.int(32), 1.0),
               stage=Requant([1], [0], 1, 0, -8, 7))
    with pytest.raises(ValueError, match=r"^Accumulator bounds reach .* more than 62 bits$"):
        accumulator_range(weights, [0], fmt)


@pytest.mark.parametrize("values, descending, message", [
    ([[1, 2]], [True, False],
     r"^Threshold directions must be 1 booleans, not bool of shape \(2,\)$"),
    ([[1, 2]], [[False]], (r"^Threshold directions must be 1 booleans, not bool of shape "
                           r"\(1, 1\)$")),
    ([[1, 2]], True, r"^Threshold directions must be 1 booleans, not bool of shape \(\)$"),
    ([[1, 2]], [0], r"^Threshold directions must be 1 booleans, not int64 of shape \(1,\)$"),
    ([[2, 1]], [False], r"^Thresholds of channel 0 are not sorted in its direction$"),
    ([[1, 2]], [True], r"^Thresholds of channel 0 are not sorted in its direction$"),
    ([[1, 1], [1, 2]], [False, True],
     r"^Thresholds of channel 1 are not sorted in its direction$"),
    ([1, 2], [False], r"^Threshold values must be 2-dimensional, not shape \(2,\)$"),
])
def test_thresholds_reject(values, descending, message):
    with pytest.raises(ValueError, match=message):
        Thresholds(values, descending)


def test_thresholds_accept_ties_in_both_directions():
    stage = Thresholds([[1, 1, 3], [3, 1, 1]], [False, True])
    assert stage.values.dtype == np.int64 and stage.descending.tolist() == [False, True]


@pytest.mark.parametrize("args, error, message", [
    (([1], [0], 0, 0, 0, 1), ValueError, r"^mult_bits must be 1\.\.32, not 0$"),
    (([1], [0], True, 0, 0, 1), TypeError, r"^mult_bits must be an integer, not True$"),
    (([256], [0], 8, 0, 0, 1), ValueError, r"^Requantization multipliers must be 0\.\.255$"),
    (([-1], [0], 8, 0, 0, 1), ValueError, r"^Requantization multipliers must be 0\.\.255$"),
    (([1], [63], 8, 0, 0, 1), ValueError, r"^Requantization shifts must be 0\.\.62$"),
    (([1], [-1], 8, 0, 0, 1), ValueError, r"^Requantization shifts must be 0\.\.62$"),
    (([1, 2], [0], 8, 0, 0, 1), ValueError, (r"^Requantization multipliers and shifts differ in "
                                             r"length$")),
    (([1], [0], 8, 0, 5, 4), ValueError, r"^Requantization clamp is empty: lo 5 > hi 4$"),
    (([1], [0], 8, 0.5, 0, 4), TypeError, r"^zero_point must be an integer, not 0\.5$"),
    (([1.5], [0], 8, 0, 0, 4), TypeError, (r"^Requantization multipliers must hold integers, "
                                           r"not float64 values$")),
])
def test_requant_rejects(args, error, message):
    with pytest.raises(error, match=message):
        Requant(*args)


@pytest.mark.parametrize("scale, error, message", [
    (0.0, ValueError, r"^scale must be finite and positive$"),
    (float("nan"), ValueError, r"^scale must be finite and positive$"),
    ([[1.0]], ValueError, r"^scale must be a scalar or a vector, not shape \(1, 1\)$"),
    ("1", TypeError, r"^scale must hold real numbers, not <U1 values$"),
])
def test_tensor_format_rejects(scale, error, message):
    with pytest.raises(error, match=message):
        TensorFormat(UINT8, scale)


def test_tensor_format_equality_and_text():
    a = TensorFormat(UINT8, 0.5, 3)
    assert a == TensorFormat(UINT8, np.float64(0.5), 3)
    assert a != TensorFormat(UINT8, 0.5, 2)
    assert a != TensorFormat(UINT8, [0.5], 3)             # vector vs scalar
    assert a != TensorFormat(Format.int(8), 0.5, 3)
    assert a != "uint8"
    assert str(a) == "uint8 x 0.5 zp 3"
    assert str(TensorFormat(BINARY, 1.0)) == "binary x 1"
    assert str(TensorFormat(INT8, [0.5, 0.25])) == "int8 x per-channel[2]"
    assert a.dequantize([3, 4, 0]).tolist() == [0.0, 0.5, -1.5]
    assert TensorFormat(INT8, [0.5, 2.0]).dequantize([[2, -3]]).tolist() == [[1.0, -6.0]]


@pytest.mark.parametrize("name", ["my net", "2nd", "wire", "small", "module", "class", "None",
                                  "caf\u00e9", "a-b", "a.b"])
def test_names_must_be_identifiers_and_no_keywords(tmp_path, name):
    """A network or layer name names a Verilog module and a Python attribute as it is: no
    escaped identifiers (``\\wire``), refused where it enters, and in an older file too."""
    message = (r"name must be an identifier \(letters, digits and underscores, not starting "
               rf"with a digit\) and not a Verilog or Python keyword, not {re.escape(repr(name))}$")
    layers = mixed_network().layers
    with pytest.raises(ValueError, match=rf"^Network {message}"):
        Network(name, layers)
    with pytest.raises(ValueError, match=rf"^Layer {message}"):
        _dense(name=name)
    path = Network("net", layers).save(tmp_path / "net.hwnn.npz")
    members = _members(path)
    _edit_header(lambda header: header.update(name=name))(members)
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    with pytest.raises(ValueError, match=rf"^'{re.escape(str(path))}' is not a valid hwnn "
                                         rf"network: Network {message[:-1]} \(quantize the "
                                         rf"model again with another name\)$"):
        Network.load(path)


def test_network_rejects():
    layers = mixed_network().layers
    with pytest.raises(ValueError, match=r"^A network needs at least one layer$"):
        Network("n", ())
    with pytest.raises(ValueError, match=r"^Network name must be an identifier .*, not ''$"):
        Network("", layers)
    with pytest.raises(TypeError, match=r"^Network name must be a string, not None$"):
        Network(None, layers)
    with pytest.raises(TypeError, match=r"^Network layers must be IR layers, not 'l0'$"):
        Network("n", ("l0",))
    with pytest.raises(ValueError, match=r"^Layer names must be unique, not \['l0', 'l0'\]$"):
        Network("n", (layers[0], Dense("l0", *[getattr(layers[1], key) for key in (
            "weights", "weight_format", "weight_scale", "bias", "input", "output", "stage")])))
    with pytest.raises(ValueError, match=r"^Layer 'l2' takes 4 inputs but layer 'l0' gives 3$"):
        Network("n", (layers[0], layers[2]))
    with pytest.raises(ValueError, match=r"^Layer 'l3' expects inputs uint8 x 0\.02 but layer "
                                         r"'l2' gives uint8 x 0\.02 zp 3$"):
        Network("n", (layers[2], replace(layers[3], input=TensorFormat(UINT8, 0.02))))
    with pytest.raises(TypeError, match=r"^Network info must be JSON-serializable: "):
        Network("n", layers, {"x": object()})


# Accumulator bounds ---------------------------------------------------------------------------

def test_acc_range_by_hand():
    layer = _dense()
    # Row 0: x0 in [0, 3] -> [0, 3]; -2 x1 -> [-6, 0]; bias 5 -> lo -6, hi 3 + 5 = 8.
    # Row 1: 3 x0 -> [0, 9]; 0 x1 -> 0; bias -1 -> lo -1, hi 9.
    lo, hi = layer.acc_range
    assert lo.tolist() == [-6, -1] and hi.tolist() == [8, 9]
    assert layer.acc_bits == 5                             # int5 holds -16..15; int4 not 9
    assert layer.threshold_bits == 5                       # [-7, 10]
    assert (layer.in_features, layer.out_features) == (2, 2)
    assert layer.weight_bits == 4 * 4 and layer.sparsity == 0.25
    # A partial sum reaches lo: x = [0, 3], bias added last: 0, -6, then -1.
    assert dense_accumulate(layer, [0, 3]).tolist() == [-1, -1]
    assert dense_accumulate(layer, [3, 0]).tolist() == [8, 8]


@pytest.mark.parametrize("weights, bias, fmt, lo, hi, bits", [
    ([[1, -2, 3]], [-2], BINARY, [-8], [6], 4),            # each term +-|w|
    ([[2, -1]], [0], INT4, [-23], [22], 6),                 # 2x in [-16, 14], -x in [-7, 8]
    ([[-128, 127]], [0], TERNARY, [-255], [255], 9),
    ([[1, 1], [0, 0]], [0, -3], UINT8, [0, -3], [510, 0], 10),
    ([[-1, 2, -3]], [4], Format.int(2), [-8], [14], 5),    # x in -2..1
])
def test_acc_range_cases(weights, bias, fmt, lo, hi, bits):
    got_lo, got_hi = accumulator_range(weights, bias, fmt)
    assert got_lo.tolist() == lo and got_hi.tolist() == hi
    assert got_lo.dtype == np.int64 and got_hi.dtype == np.int64
    layer = Dense("d", weights, Format.int(8), np.ones(len(bias)), bias, TensorFormat(fmt, 1.0),
                  TensorFormat(Format.int(32), 1.0), None)
    assert layer.acc_bits == bits


@pytest.mark.parametrize("in_format", [Format.uint(2), INT4, BINARY, TERNARY, UINT8])
@pytest.mark.parametrize("weight_format", [INT4, TERNARY, BINARY, INT8])
def test_no_input_leaves_the_accumulator_range(in_format, weight_format):
    rng = np.random.default_rng([in_format.bits, weight_format.bits, int(in_format.signed)])
    out_features, in_features = 6, 9
    weights = rng.integers(weight_format.min_value, weight_format.max_value + 1,
                           (out_features, in_features))
    if weight_format.kind == "bipolar":
        weights = np.where(weights >= 0, 1, -1)
    bias = rng.integers(-300, 301, out_features)
    layer = Dense("d", weights, weight_format, np.ones(out_features), bias,
                  TensorFormat(in_format, 1.0), TensorFormat(Format.int(32), 1.0), None)
    lo, hi = layer.acc_range
    values = in_format.level_value(np.arange(in_format.levels))
    # Random inputs, half of them drawn from the format's extremes.
    x = rng.choice(values, (400, in_features))
    extreme = rng.random((400, in_features)) < 0.5
    x = np.where(extreme, rng.choice([values[0], values[-1]], (400, in_features)), x)
    terms = x[:, None, :] * weights[None, :, :]            # (sample, channel, input)
    orders = [terms, terms[..., ::-1], terms[..., rng.permutation(in_features)]]
    for ordered in orders:
        for with_bias in (np.concatenate([bias[None, :, None].repeat(400, 0), ordered], -1),
                          np.concatenate([ordered, bias[None, :, None].repeat(400, 0)], -1)):
            partial = np.cumsum(with_bias, axis=-1)
            assert np.all(partial >= lo[None, :, None]) and np.all(partial <= hi[None, :, None])
    acc = dense_accumulate(layer, x)
    assert np.array_equal(acc, terms.sum(-1) + bias)
    assert np.all((acc >= lo) & (acc <= hi))
    # Tight: the extreme inputs of a channel reach hi (lo) less its bias' positive (negative)
    # part plus the bias, that is hi (lo) itself when the bias has the same sign.
    best = np.where(weights > 0, values[-1], values[0])    # (channel, input)
    worst = np.where(weights > 0, values[0], values[-1])
    for channel in range(out_features):
        top = dense_accumulate(layer, best[channel])[channel]
        bottom = dense_accumulate(layer, worst[channel])[channel]
        assert top == hi[channel] - max(bias[channel], 0) + bias[channel]
        assert bottom == lo[channel] - min(bias[channel], 0) + bias[channel]


# Network helpers ------------------------------------------------------------------------------

def test_network_properties_and_io_helpers():
    network = mixed_network()
    assert (network.in_features, network.out_features) == (4, 2)
    assert network.input == TensorFormat(UINT8, 0.01)
    assert network.output == TensorFormat(Format.int(16), [0.1, 0.3])
    # round half to even, then saturate to 0..255: 0.4 -> 0, 2.6 -> 3, 200, 500 -> 255, -100 -> 0
    assert network.quantize_input([0.004, 0.026, 2.0, 5.0]).tolist() == [0, 3, 200, 255]
    assert network.quantize_input([[-1.0, 0.0, 0.0149, 0.0251]]).tolist() == [[0, 0, 1, 3]]
    np.testing.assert_allclose(network.dequantize_output([[10, -3]]), [[1.0, -0.9]])
    with pytest.raises(ValueError, match=r"^Inputs must have 4 features on the last axis, not "
                                         r"shape \(3,\)$"):
        network.quantize_input([1.0, 2.0, 3.0])
    binary_net = Network("b", mixed_network().layers[1:2])
    assert binary_net.quantize_input([0.0, -0.1, 2.0]).tolist() == [1, -1, 1]



def test_layer_table_shows_each_layer_shape():
    from hwnn.flow.report import layer_table
    rows = layer_table(mixed_network()).splitlines()
    assert rows[0].split()[:2] == ["layer", "shape"]
    assert [row.split()[:2] for row in rows[1:5]] == [["l0", "4->3"], ["l1", "3->4"],
                                                      ["l2", "4->5"], ["l3", "5->2"]]

if __name__ == "__main__":
    version1_network().save(VERSION1_FILE)
