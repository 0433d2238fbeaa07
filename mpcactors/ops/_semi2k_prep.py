"""Preprocessing ahead for semi2k without a dealer: a product's correlations from shapes alone.

Theory of operation
-------------------
A dealer's part of every op needs only shapes, so it runs ahead and its corrections wait for the
holders. Without a dealer the holders make the same correlations by OT (``_ot_triples.py``,
``_ot_pairwise.py``); for a product of secret tensors (``mul``, ``matmul``, and their fixed-point
versions with a truncation) the scheduler makes them in an op of its own, built with the product
and waiting only for the job's set-up (``scheduler/_job.py``, ``Job.op(prepare=...)``). Its OT
rounds run while the product's inputs are still being computed, merged into the same frames, and
the product is left with the dealer's online rounds: the Beaver opening, then the truncation's
1-bit opening (two holders) or its masked opening (more). What it holds is exactly what the op
would have made itself, only earlier: one holder's (a_i, b_i, c_i) and truncation correlation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._comm import Step, gather
from ._matmul import matmul_shape
from ._ot_pairwise import PairwiseSource
from ._ot_triples import OtSource

__all__ = ["Prepared", "Source", "fitting", "pair", "pairwise", "prepare_product"]

Source = OtSource | PairwiseSource  # the makers of correlations without a dealer


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """One product's correlations made ahead from shapes (:meth:`Semi2k.prepare`)."""

    kind: str  # "mul" or "matmul"
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # x, y, out
    bits: int  # the truncation's (0: none)
    triple: list[np.ndarray]  # this holder's (a_i, b_i, c_i)
    trunc: list[np.ndarray] | None  # the truncation's correlation (OtSource.trunc_bits / trunc_tuple)


def fitting(prepared: list[np.ndarray] | None, shapes: tuple[tuple[int, ...], ...]) -> list[np.ndarray] | None:
    """A prepared triple if it fits the operands' shapes (else None: made in the op)."""
    if prepared is None or tuple(np.shape(a) for a in prepared) != shapes:
        return None
    return prepared  # used once: its op is the prepared node's only consumer


def pair(src: Source) -> OtSource:
    if not isinstance(src, OtSource):
        raise TypeError("semi2k: a two-holder correlation asked of more holders (internal)")
    return src




def prepare_product(
    src: Source, trunc: Source | None, kind: str, xshape: tuple[int, ...], yshape: tuple[int, ...], bits: int
) -> Step[Prepared]:
    """One product's correlations: the triple (``kind`` "mul": operands of one shape; "matmul":
    a matrix triple) from ``src`` and, for ``bits`` > 0, the truncation's from ``trunc`` (two
    holders: the wrap bit's; more: the tuple), side by side in the same rounds."""
    if kind == "mul":
        if xshape != yshape:
            raise ValueError(f"prepare: mul operands of one shape, not {xshape} and {yshape}")
        out = xshape
        _, triple = src.triple(out)
    elif kind == "matmul":
        out = matmul_shape(xshape, yshape)
        _, triple = src.matrix_triple(xshape, yshape)
    else:
        raise ValueError(f"prepare: kind must be 'mul' or 'matmul', not {kind!r}")
    steps = [triple]
    if bits:
        if trunc is None:
            raise ValueError("prepare: a truncation's correlation needs its source")
        steps.append(pairwise(trunc).trunc_tuple(out, bits)[1] if isinstance(trunc, PairwiseSource) else pair(trunc).trunc_bits(out, bits)[1])
    res = yield from gather(steps)
    return Prepared(kind, (xshape, yshape, out), bits, res[0], res[1] if bits else None)


def pairwise(src: Source) -> PairwiseSource:
    if not isinstance(src, PairwiseSource):
        raise TypeError("semi2k: a correlation of more than two holders asked of two (internal)")
    return src
