"""Geometry of a kernel sliding over a channels-last image: checked parameters and sizes.

An image is ``height x width x channels`` (channels-last, row-major); a kernel ``kh x kw``
moves by ``stride`` ``(sh, sw)`` over the image padded by ``(top, bottom, left, right)``
pixels. Window ``(oy, ox)`` covers padded rows ``oy * sh .. oy * sh + kh - 1`` and padded
columns ``ox * sw .. ox * sw + kw - 1``; there are ``out_height x out_width`` of them.
"""

from dataclasses import dataclass

from ..errors import ParameterError
from .params import check_positive_int

__all__ = ["SlidingWindows", "sliding_windows"]


@dataclass(frozen=True)
class SlidingWindows:
    """The checked geometry; build it with :func:`sliding_windows`."""
    height:   int
    width:    int
    channels: int
    kernel:   tuple    # (kh, kw)
    stride:   tuple    # (sh, sw)
    padding:  tuple    # (top, bottom, left, right)

    @property
    def out_height(self) -> int:
        top, bottom = self.padding[:2]
        return (self.height + top + bottom - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_width(self) -> int:
        left, right = self.padding[2:]
        return (self.width + left + right - self.kernel[1]) // self.stride[1] + 1

    def real_rows(self, oy) -> tuple[int, int]:
        """The first and last image row (unpadded) that window row ``oy`` covers."""
        first = oy * self.stride[0] - self.padding[0]
        return max(first, 0), min(first + self.kernel[0], self.height) - 1


def _ints(owner, name, value, size, minimum, what):
    """``value`` (one int for every entry, or a tuple/list of ``size`` ints) as a tuple."""
    entries = (value,) * size if isinstance(value, int) and not isinstance(value, bool) \
        else value
    if (not isinstance(entries, (tuple, list)) or len(entries) != size
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in entries)):
        raise TypeError(f"{owner} {name} must be {what}, not {value!r}")
    if min(entries) < minimum:
        raise ParameterError(name, f"{owner} {name}", f"must be {what}, not {value!r}")
    return tuple(entries)


def sliding_windows(owner, image, kernel, stride, padding=0) -> SlidingWindows:
    """Check the parameters of ``owner`` (a class name, for messages) and return the geometry.

    ``image`` is ``(height, width, channels)``; ``kernel`` and ``stride`` an int or a pair
    (rows, columns); ``padding`` an int or ``(top, bottom, left, right)``, each side smaller
    than the kernel (so that every window holds at least one pixel of the image). Raises
    TypeError for a value of the wrong type and :class:`~hwnn.errors.ParameterError` (a
    ValueError) for one out of range or a kernel larger than the padded image.
    """
    if not isinstance(image, (tuple, list)) or len(image) != 3:
        raise TypeError(f"{owner} image must be (height, width, channels), not {image!r}")
    for name, value in zip(("height", "width", "channels"), image, strict=True):
        check_positive_int(owner, f"image {name}", value)
    kernel = _ints(owner, "kernel", kernel, 2, 1, "a positive integer or a pair of them")
    stride = _ints(owner, "stride", stride, 2, 1, "a positive integer or a pair of them")
    padding = _ints(owner, "padding", padding, 4, 0,
                    "a non-negative integer or 4 of them (top, bottom, left, right)")
    if any(pad >= k for pad, k in zip(padding, (kernel[0],) * 2 + (kernel[1],) * 2,
                                      strict=True)):
        raise ParameterError("padding", f"{owner} padding",
                             f"must be smaller than the kernel {kernel} on every side, not "
                             f"{padding} (top, bottom, left, right)")
    geometry = SlidingWindows(*image, kernel, stride, padding)
    padded = (image[0] + padding[0] + padding[1], image[1] + padding[2] + padding[3])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        what = "padded image" if any(padding) else "image"
        raise ParameterError("kernel", f"{owner} kernel",
                             f"must fit in the {what} {padded[0]}x{padded[1]}, not "
                             f"{kernel[0]}x{kernel[1]}")
    return geometry
