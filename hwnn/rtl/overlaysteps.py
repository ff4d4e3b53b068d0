"""The systolic overlay's steps: each dense or convolutional layer of a network, with the max
pool after it folded in, as one tiled GEMM (:class:`Step`).

A step's GEMM has ``M = batch x R`` rows (``R`` rows per vector: 1 for a dense layer, one per
output pixel for a convolution), ``K`` inputs (the window of ``kh x kw`` taps of ``C``
channels, or the dense layer's inputs) and ``N`` outputs (output channels).

Activations are held as pixels, row-major, of ``words(C)`` words of ``cols`` channels (a
vector is one pixel of ``C = features`` values), so an image's channels are padded to whole
words. A step reads input tiles in the order tap (kernel row, kernel column), then word of
the tap's pixels (a convolution's tap reads one pixel, a dense layer's single tap every pixel
of its input), then slice of ``rows`` values of the word; the slices of a tap's last word
that hold none of its values are skipped. The row issuer computes the address of each row's
input pixel, and rows whose pixel falls in the padding read the input's zero point instead.

A max pool after a convolution is folded into it: the convolution computes only the pixels
of the pool's windows, one window after the other (``R = pooled pixels x window``; a pixel of
overlapping windows is computed for each of them), and the output stage's values of a window
are reduced to their maximum before they are written.
"""

import math
from dataclasses import dataclass

from ..ir import Conv2d, Dense, MaxPool2d, Network
from ..ir.conv import Im2col

__all__ = ["Step", "overlay_steps"]


@dataclass(frozen=True)
class Step:
    """One GEMM of the overlay.

    ``index`` is the network layer's position and ``layer`` the :class:`~hwnn.ir.Dense` the
    step computes (a convolution's :meth:`~hwnn.ir.Conv2d.im2col`), whose output stage it
    uses; ``pool`` the max pool folded in (``pool_index`` its position) or None.
    ``in_pixels`` and ``channels`` lay out the input (pixels of ``channels`` values);
    ``pixels`` is how many of them a tap reads (all for a dense layer, one for a
    convolution). ``in_size``, ``kernel``, ``stride`` and ``before`` (padding at the top and
    left) place a convolution's windows (a dense layer: one 1x1 window on a 1x1 image).
    ``walk`` ``(A1, B1, A2, B2)`` orders the rows of a vector: ``A1 x B1`` output pixels
    (pooled, if pooled), each a window of ``A2 x B2`` convolution pixels (1 x 1 unpooled);
    row ``(a1, b1, a2, b2)`` is convolution pixel ``(a1 * P1 + a2, b1 * P2 + b2)``, where
    ``pool_step`` ``(P1, P2)`` is the pool's stride (1 x 1 unpooled).
    """
    index:      int
    layer:      Dense
    pool:       MaxPool2d | None
    pool_index: int | None
    in_pixels:  int
    channels:   int
    pixels:     int
    in_size:    tuple[int, int]
    kernel:     tuple[int, int]
    stride:     tuple[int, int]
    before:     tuple[int, int]
    walk:       tuple[int, int, int, int]
    pad_value:  int
    pool_step:  tuple[int, int] = (1, 1)

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def rows_per_vector(self) -> int:
        """``R``: the GEMM rows of one vector."""
        return math.prod(self.walk)

    @property
    def out_pixels(self) -> int:
        """Pixels of the step's output (after the pool)."""
        return self.walk[0] * self.walk[1]

    @property
    def out_channels(self) -> int:
        return self.layer.out_features

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one vector: its own weights (a depthwise convolution's
        taps, not the zeros of its block-diagonal GEMM) at each distinct pixel it computes
        (overlapping pool windows compute some twice)."""
        weights = (self.layer.convolution.weights if isinstance(self.layer, Im2col)
                   else self.layer.weights)
        a1, b1, a2, b2 = self.walk
        distinct = [len({outer * step + inner for outer in range(count) for inner in range(size)})
                    for count, size, step in ((a1, a2, self.pool_step[0]),
                                              (b1, b2, self.pool_step[1]))]
        return distinct[0] * distinct[1] * weights.size


def overlay_steps(network: Network) -> list[Step]:
    """The steps of ``network``; a one-line ValueError names the layer and the option the
    overlay cannot serve."""
    steps, layers = [], network.layers
    first = layers[0]
    if isinstance(first, MaxPool2d):
        raise ValueError(f"The systolic overlay pools only after a convolution, not layer "
                         f"{first.name!r} at the network's input")
    if not isinstance(layers[-1], Dense):
        raise ValueError(f"The systolic overlay ends a network with a dense layer, not layer "
                         f"{layers[-1].name!r} of kind {layers[-1].kind!r}")
    in_pixels, channels = ((first.in_size[0] * first.in_size[1], first.in_channels)
                           if isinstance(first, Conv2d) else (1, first.in_features))
    previous = None
    for index, layer in enumerate(layers):
        if isinstance(layer, MaxPool2d):
            if not isinstance(previous, Conv2d) or steps[-1].pool is not None:
                raise ValueError(f"The systolic overlay pools only right after a convolution, "
                                 f"not layer {layer.name!r} after layer {previous.name!r}")
            step = steps[-1]
            steps[-1] = Step(**{**step.__dict__, "pool": layer, "pool_index": index,
                                "walk": (*layer.out_size, *layer.kernel),
                                "pool_step": layer.stride})
        elif isinstance(layer, Conv2d):
            if previous is not None and not isinstance(previous, (Conv2d, MaxPool2d)):
                raise ValueError(f"The systolic overlay takes images from the input or a "
                                 f"convolution only, not convolution {layer.name!r} after "
                                 f"layer {previous.name!r}")
            steps.append(Step(index, layer.im2col(), None, None, in_pixels, channels, 1,
                              layer.in_size, layer.kernel, layer.stride,
                              (layer.padding[0], layer.padding[2]), (*layer.out_size, 1, 1),
                              int(layer.input.zero_point)))
        else:
            steps.append(Step(index, layer, None, None, in_pixels, channels, in_pixels,
                              (1, 1), (1, 1), (1, 1), (0, 0), (1, 1, 1, 1), 0))
        previous = layer
        in_pixels, channels = steps[-1].out_pixels, steps[-1].out_channels
    return steps
