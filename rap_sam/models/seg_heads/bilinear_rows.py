from typing import Optional, Tuple

import numpy as np


class BilinearRows:
    """Which input rows each output row of a CPU bilinear resize
    (``align_corners=False``, output size given, no scale factor) reads, as
    aten's ``upsample_bilinear2d`` computes them.

    aten's scale is ``float32(in_size) / out_size`` and the source row of
    output row ``y`` is ``scale * (y + 0.5) - 0.5`` in float32, contracted
    into one fused multiply-add (one rounding), clamped at 0; the row reads
    its floor and the next row (the last row reads itself twice). The same
    value computed in float64 is exact, so rounding it once to float32 is
    the kernel's value.

    The row ranges below are widened by a row on each side, so that they
    hold even if a build of PyTorch rounds the source row differently: they
    decide only which rows a band computes, never their values (the kernel
    itself computes those).

    Args:
        in_size (int): Input rows.
        out_size (int): Output rows.
    """

    def __init__(self, in_size: int, out_size: int):
        self.in_size = in_size
        self.out_size = out_size
        #: A resize to the same size copies rows (aten's shortcut).
        self.identity = in_size == out_size
        y = np.arange(out_size, dtype=np.float64)
        if self.identity:
            first = y.astype(np.int64)
            last = first
        else:
            scale = np.float32(in_size) / np.float32(out_size)
            source = (np.float64(scale) * (y + 0.5) - 0.5).astype(np.float32)
            first = np.minimum(
                np.floor(np.maximum(source, 0)).astype(np.int64), in_size - 1)
            last = first + (first < in_size - 1)
        #: The two input rows each output row reads (non-decreasing).
        self.first, self.last = first, last

    def scale_argument(self) -> Optional[float]:
        """The ``scales_h`` to hand ``upsample_bilinear2d`` so that a resize
        of the top ``n`` input rows to the top ``m`` output rows uses this
        resize's scale (aten turns it into ``float32(1.0 / scales_h)``;
        from the sizes it would compute ``n / m``): None where no double
        gives that float (or for the identity, which needs none)."""
        if self.identity:
            return None
        scale = np.float32(self.in_size) / np.float32(self.out_size)
        argument = self.out_size / self.in_size
        if np.float32(1.0 / argument) != scale:
            return None
        return argument

    def reading(self, p0: int, p1: int) -> Tuple[int, int]:
        """The output rows ``[y0, y1)`` that read any of the input rows
        ``[p0, p1)``, and one row more on each side (``y0 == y1``: none)."""
        if p1 <= p0:
            return 0, 0
        y0 = int(np.searchsorted(self.last, p0, 'left'))
        y1 = int(np.searchsorted(self.first, p1 - 1, 'right'))
        if y1 <= y0:
            return 0, 0
        return max(y0 - 1, 0), min(y1 + 1, self.out_size)

    def read_by(self, y0: int, y1: int) -> Tuple[int, int]:
        """The input rows ``[q0, q1)`` that the output rows ``[y0, y1)``
        read, and one row more on each side."""
        return (max(int(self.first[y0]) - 1,
                    0), min(int(self.last[y1 - 1]) + 2, self.in_size))
