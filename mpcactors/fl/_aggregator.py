"""Aggregators: how the round's client vectors become their sum at the server.

Theory of operation
-------------------
A client's round vector is ``[n_k * (w_k - w_r), n_k, n_k * train_loss, m_k * metric..., m_k]``
(``_model.py``). :class:`SecureAggregator` sums the vectors with
:func:`mpcactors.secagg.secure_aggregate` (Bonawitz et al. 2017, SecAgg+ with ``neighbours``):
the server learns the sum over the round's survivors and nothing else, and a round with fewer
than ``threshold`` survivors fails with AggregationError without revealing anything.

Quantisation is chosen from the update's clip norm. Each client scales its update so that
|w_k - w_r|_2 <= ``clip_norm`` (so every element is within it), and weights it by
n_k <= ``max_samples``; so no element of a vector exceeds ``clip = max_samples * clip_norm``
(metrics too, as long as each is below ``clip_norm``). The fixed-point fraction is the largest
that lets the sum of the round's n vectors fit Z_2^ring_bits with a bit to spare:
``frac_bits = min(32, ring_bits - 2 - ceil(log2(n * clip)))``. The chosen clip and step are
reported in every round's record. :class:`PlainAggregator` is the INSECURE baseline (the server
sees every client's vector); it logs a warning whenever it is used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import anyio
import numpy as np

from .._errors import AggregationError, ConfigError, LinkError
from ..link._abc import JobLink
from ..secagg import secure_aggregate

__all__ = ["Aggregate", "PlainAggregator", "SecureAggregator"]


@dataclasses.dataclass(frozen=True, slots=True)
class Aggregate:
    """One round's aggregation at the server.

    Attributes:
        total: the sum of the survivors' vectors.
        survivors: the clients whose vector is in the sum (as far as the server can tell).
        clip, step: quantisation range and step (0 for the plain sum).
    """

    total: np.ndarray
    survivors: tuple[str, ...]
    clip: float = 0.0
    step: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class SecureAggregator:
    """Secure aggregation of the round's updates (the default).

    Attributes:
        threshold: survivors a round needs: an int >= 2, a fraction in (0, 1] of the round's
            clients, or None for a majority (at least 2).
        clip_norm: each update is scaled to L2 norm <= this (bounds the quantisation range).
        max_samples: a client's sample weight is capped at this (public bound).
        ring_bits: the ring Z_2^k of masked values (<= 32 halves the bytes; needs a small
            ``max_samples * clip_norm``).
        frac_bits: fixed-point fraction; None chooses the largest that fits (module doc).
        neighbours: SecAgg+ graph degree; None: every client masks with every other.
        consistency_check: run the signed consistency-check stage (threshold > n/2).
        stage_timeout_s: the server's wait for each stage (it also covers local training).
    """

    threshold: int | float | None = None
    clip_norm: float = 100.0
    max_samples: int = 1 << 20
    ring_bits: int = 64
    frac_bits: int | None = None
    neighbours: int | None = None
    consistency_check: bool = False
    stage_timeout_s: float = 30.0

    secure = True

    def __post_init__(self) -> None:
        if not (isinstance(self.clip_norm, (int, float)) and math.isfinite(self.clip_norm)
                and self.clip_norm > 0):  # fmt: skip
            raise ConfigError(f"must be a finite positive number, not {self.clip_norm!r}", key="clip_norm")
        if isinstance(self.max_samples, bool) or not isinstance(self.max_samples, int) or self.max_samples < 1:
            raise ConfigError(f"must be a positive integer, not {self.max_samples!r}", key="max_samples")
        if not self.stage_timeout_s > 0:
            raise ConfigError(f"must be positive, not {self.stage_timeout_s!r}", key="stage_timeout_s")
        t = self.threshold
        if t is not None and (isinstance(t, bool) or not (
                (isinstance(t, int) and t >= 2) or (isinstance(t, float) and 0 < t <= 1))):  # fmt: skip
            raise ConfigError(
                f"must be None, an integer >= 2 or a fraction in (0, 1], not {t!r}", key="threshold"
            )

    def threshold_for(self, n_clients: int) -> int:
        """The threshold of a round with ``n_clients`` sampled clients."""
        t = self.threshold
        if t is None:
            return max(2, n_clients // 2 + 1)
        if isinstance(t, float):
            return max(2, math.ceil(t * n_clients))
        return t

    def quantisation(self, n_clients: int) -> tuple[float, int]:
        """(clip, frac_bits) for a round of ``n_clients`` (module doc)."""
        clip = float(self.max_samples) * float(self.clip_norm)
        if self.frac_bits is not None:
            return clip, self.frac_bits
        frac = min(32, self.ring_bits - 2 - math.ceil(math.log2(max(n_clients, 1) * clip)))
        if frac < 4:
            raise ConfigError(
                f"max_samples * clip_norm = {clip:g} summed over {n_clients} clients leaves {frac} "
                f"fractional bits in Z_2^{self.ring_bits}; lower max_samples or clip_norm, or "
                "raise ring_bits",
                key="clip_norm",
            )
        return clip, frac

    async def aggregate(self, link: JobLink, *, job: str, vector: np.ndarray | None, server: str,
                        clients: Sequence[str], tag: str,
                        dropout_after: str | None = None) -> Aggregate | None:  # fmt: skip
        """Sum the clients' vectors at ``server``; None at the clients."""
        clip, frac = self.quantisation(len(clients))
        report = await secure_aggregate(
            link, job=job, vector=vector, server=server, clients=clients,
            threshold=self.threshold_for(len(clients)), clip=clip, frac_bits=frac,
            ring_bits=self.ring_bits, neighbours=self.neighbours,
            consistency_check=self.consistency_check, stage_timeout_s=self.stage_timeout_s,
            tag=tag, dropout_after=dropout_after,
        )  # fmt: skip
        if report.result is None:
            return None
        survivors = report.members.get("masked_input", ())
        return Aggregate(report.result, tuple(survivors), clip, 2.0**-frac)


@dataclasses.dataclass(frozen=True, slots=True)
class PlainAggregator:
    """INSECURE: clients send their float64 vectors in the clear; the server sees every update.

    For comparisons and debugging only; every use logs a warning. Like
    :func:`mpcactors.secagg.plain_sum`, but it knows which clients' vectors arrived (malformed
    or non-finite vectors are left out) so the round records name the survivors.
    """

    stage_timeout_s: float = 30.0
    clip_norm: float = math.inf
    max_samples: int = 1 << 62

    secure = False

    def __post_init__(self) -> None:
        if not self.stage_timeout_s > 0:
            raise ConfigError(f"must be positive, not {self.stage_timeout_s!r}", key="stage_timeout_s")

    def threshold_for(self, n_clients: int) -> int:
        return 1

    async def aggregate(self, link: JobLink, *, job: str, vector: np.ndarray | None, server: str,
                        clients: Sequence[str], tag: str,
                        dropout_after: str | None = None) -> Aggregate | None:  # fmt: skip
        if dropout_after is not None:
            if dropout_after != "start":
                raise ConfigError(
                    f"the plain aggregator only supports 'start', not {dropout_after!r}",
                    key="dropout_after",
                )
            return None
        if link.party != server:
            with anyio.fail_after(self.stage_timeout_s):
                await link.channel(server, job, tag).send(np.asarray(vector, dtype=np.float64))
            return None
        got: dict[str, np.ndarray] = {}

        async def read(c: str) -> None:
            try:
                v = await link.channel(c, job, tag).receive()
            except LinkError:
                return
            if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f" and np.all(np.isfinite(v)):
                got[c] = np.asarray(v, dtype=np.float64)

        with anyio.move_on_after(self.stage_timeout_s):  # whoever answered in time is in
            async with anyio.create_task_group() as tg:
                for c in clients:
                    tg.start_soon(read, c)
        if not got:
            raise AggregationError(f"plain sum {tag!r}: no vector arrived within {self.stage_timeout_s:g} s")
        if len({v.shape for v in got.values()}) > 1:
            raise AggregationError(f"plain sum {tag!r}: the clients' vectors differ in length")
        return Aggregate(np.sum(list(got.values()), axis=0), tuple(sorted(got)))
