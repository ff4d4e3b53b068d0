"""Sliding windows over channels-last images of codes: what a sliding-window unit emits."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["windows"]


def windows(codes, kernel, stride, padding=(0, 0, 0, 0), fill=0) -> np.ndarray:
    """Every ``kernel`` ``(kh, kw)`` window of images ``codes`` (batch axes first, then
    ``(H, W, C)``), padded by ``padding`` ``(top, bottom, left, right)`` codes ``fill`` and
    stepped by ``stride`` ``(sh, sw)``: an int64 array ``(..., OH, OW, kh * kw * C)`` whose
    window ``(oy, ox)`` holds, at ``(ky * kw + kx) * C + c``, the padded image's code at row
    ``oy * sh + ky``, column ``ox * sw + kx``, channel ``c``: the order a sliding-window unit
    emits it in (row by row, left to right, channels fastest)."""
    codes = np.asarray(codes, dtype=np.int64)
    (kh, kw), (sh, sw), (top, bottom, left, right) = kernel, stride, padding
    pads = [(0, 0)] * (codes.ndim - 3) + [(top, bottom), (left, right), (0, 0)]
    padded = np.pad(codes, pads, constant_values=fill)
    view = sliding_window_view(padded, (kh, kw), axis=(-3, -2))[..., ::sh, ::sw, :, :, :]
    # (..., OH, OW, C, kh, kw) -> (..., OH, OW, kh, kw, C), then one window per pixel.
    return np.moveaxis(view, -3, -1).reshape(*view.shape[:-3], kh * kw * codes.shape[-1])
