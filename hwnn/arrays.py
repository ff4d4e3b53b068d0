"""Loading user data files: input arrays (``.npy``, or ``.npz`` with ``x``) and labelled test
sets (``.npz`` with ``x`` and ``y``). Every problem is a ``ValueError`` or
``FileNotFoundError`` naming the file."""

from pathlib import Path

import numpy as np

__all__ = ["load_inputs", "load_labelled"]


def _read(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"No data file at {str(path)!r}")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return {key: data[key] for key in data.files}
        return data
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{str(path)!r} is not a readable .npy/.npz file: {error}") from None


def _real_matrix(array, where):
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{where} must hold numbers, not {array.dtype} values")
    if array.ndim != 2:
        raise ValueError(f"{where} must be a 2-d array (samples x features), not shape "
                         f"{array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where} holds NaN or infinite values")
    return array


def load_inputs(path) -> np.ndarray:
    """Inputs (samples x features) from a ``.npy``, or the ``x`` array of an ``.npz``."""
    path = Path(path)
    data = _read(path)
    if isinstance(data, dict):
        if "x" not in data:
            raise ValueError(f"{str(path)!r} has no array 'x' (it has {', '.join(data) or 'none'})")
        data = data["x"]
    return _real_matrix(data, f"Inputs in {str(path)!r}")


def load_labelled(path) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x`` and labels ``y`` (one per input: integers, other numbers, booleans or
    strings) of a test set ``.npz``."""
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict) or not {"x", "y"} <= set(data):
        raise ValueError(f"{str(path)!r} must be an .npz with arrays 'x' (inputs) and 'y' "
                         f"(labels)")
    x = _real_matrix(data["x"], f"Inputs in {str(path)!r}")
    y = data["y"]
    if y.dtype.kind not in "biufU" or y.shape != x.shape[:1]:
        raise ValueError(f"Labels in {str(path)!r} must be {x.shape[0]} numbers or strings, not "
                         f"{y.dtype} of shape {y.shape}")
    return x, y
