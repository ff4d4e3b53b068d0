"""Loading user data files: input arrays (``.npy``, or ``.npz`` with ``x``) and labelled test
sets (``.npz`` with ``x`` and ``y``), and checking input codes against a network. Every problem
is a ``ValueError`` or ``FileNotFoundError`` naming the file or what is wrong."""

from pathlib import Path

import numpy as np

__all__ = ["check_codes", "load_inputs", "load_labelled"]


#: The first bytes of NumPy's .npy files and of .npz (zip) files.
_MAGICS = (b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")


def _read(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"No data file at {str(path)!r}")
    with path.open("rb") as file:
        start = file.read(6)
    if not start.startswith(_MAGICS):
        raise ValueError(f"{str(path)!r} is not a .npy or .npz file (NumPy's binary formats, "
                         f"written by numpy.save and numpy.savez); convert text or CSV data "
                         f"with numpy.loadtxt and numpy.save")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return {key: data[key] for key in data.files}
        return data
    except (OSError, ValueError, EOFError) as error:
        # NumPy refuses object arrays with advice to allow pickles, which would run code.
        reason = ("it holds Python objects, not numbers" if "allow_pickle" in str(error)
                  else error)
        raise ValueError(f"{str(path)!r} is not a readable .npy/.npz file: {reason}") from None


def _real_samples(array, where):
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{where} must hold numbers, not {array.dtype} values")
    if array.ndim < 2:
        raise ValueError(f"{where} must be an array of samples (samples x features, or samples "
                         f"x image axes), not shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where} holds NaN or infinite values")
    return array


def load_inputs(path) -> np.ndarray:
    """Inputs (samples first: samples x features, or a batch of images) from a ``.npy``, or the
    ``x`` array of an ``.npz``."""
    path = Path(path)
    data = _read(path)
    if isinstance(data, dict):
        if "x" not in data:
            raise ValueError(f"{str(path)!r} has no array 'x' (it has {', '.join(data) or 'none'})")
        data = data["x"]
    return _real_samples(data, f"Inputs in {str(path)!r}")


def load_labelled(path) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x`` and labels ``y`` (one per input: integers, other numbers, booleans or
    strings) of a test set ``.npz``."""
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict) or not {"x", "y"} <= set(data):
        raise ValueError(f"{str(path)!r} must be an .npz with arrays 'x' (inputs) and 'y' "
                         f"(labels)")
    x = _real_samples(data["x"], f"Inputs in {str(path)!r}")
    y = data["y"]
    if y.dtype.kind not in "biufU" or y.shape != x.shape[:1]:
        raise ValueError(f"Labels in {str(path)!r} must be {x.shape[0]} numbers or strings, not "
                         f"{y.dtype} of shape {y.shape}")
    return x, y


def check_codes(network, codes) -> np.ndarray:
    """``codes`` as an int64 matrix of input vectors for ``network`` (a
    :class:`~hwnn.quant.Network`); ValueError unless they are integers of shape
    ``(N, network.in_features)``, N >= 1, inside the network's input format."""
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise ValueError(f"Inputs must be integer codes of format {network.input.format}, not "
                         f"{codes.dtype} values (quantize real inputs with the network first)")
    if codes.ndim != 2 or codes.shape[1] != network.in_features:
        raise ValueError(f"Inputs must have shape (N, {network.in_features}) for this design, "
                         f"not {codes.shape}")
    if len(codes) == 0:
        raise ValueError("There are no inputs: the input array has 0 rows")
    fmt = network.input.format
    if not fmt.contains(codes):
        row = int(np.nonzero([not fmt.contains(r) for r in codes])[0][0])
        raise ValueError(f"Input {row} holds codes outside the design's input format {fmt} "
                         f"({fmt.min_value}..{fmt.max_value})")
    return codes.astype(np.int64)
