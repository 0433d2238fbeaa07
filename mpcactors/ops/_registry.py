"""Protocol names -> implementations, with the configuration checks a user needs to see."""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import ConfigError
from ._protocol import Protocol
from ._rep3 import Rep3
from ._semi2k import NO_DEALER, SOFTSPOKEN_K, TRUSTED_FIRST_PARTY, Semi2k

__all__ = ["PROTOCOLS", "make_protocol"]

PROTOCOLS: dict[str, type[Protocol]] = {"semi2k": Semi2k, "rep3": Rep3}


def make_protocol(
    name: str,
    party: str,
    parties: Sequence[str],
    *,
    fxp_bits: int = 18,
    dealer: str | None = None,
    softspoken_k: int | None = None,
    matrix_triples: str | None = None,
    mul_triples: str | None = None,
) -> Protocol:
    """This party's instance of protocol ``name`` for a job among ``parties``.

    Args:
        name: ``"semi2k"`` or ``"rep3"``.
        party: this party's name.
        parties: every party of the job, in the job's order (a semi2k dealer included).
        fxp_bits: fixed-point fractional bits (0..62).
        dealer: semi2k only: the dealing party, ``"trusted-first-party"`` (insecure), or None /
            ``"none"``: no dealer, two holders make their correlations by OT.
        softspoken_k: semi2k without a dealer: bits per small VOLE of the OT extension (1, 2,
            4 or 8; None: 2). Other protocols make no OTs and ignore it.
        matrix_triples: semi2k without a dealer: ``"auto"`` (None; by lattice HE where TenSEAL
            is installed and its modelled cost is lower, else by OT), ``"ot"`` or ``"he"``.
        mul_triples: the same for elementwise (``mul``) triples.

    Returns:
        The protocol instance.

    Raises:
        ConfigError: unknown protocol (the message names the known ones), rep3 with other than
            3 parties or with a dealer, semi2k without a dealer and other than 2 parties, or with
            a dealer that is not a party, a party not among ``parties``, repeated names, bad
            ``fxp_bits`` or ``softspoken_k``.
    """
    cls = PROTOCOLS.get(name)
    if cls is None:
        known = ", ".join(sorted(PROTOCOLS))
        raise ConfigError(f"unknown protocol {name!r}; known protocols: {known}", key="protocol")
    if not isinstance(fxp_bits, int) or isinstance(fxp_bits, bool) or not 0 <= fxp_bits <= 62:
        raise ConfigError(f"fxp_bits must be an integer in 0..62, not {fxp_bits!r}", key="fxp_bits")
    parties = tuple(parties)
    if name == "semi2k" and dealer not in (None, NO_DEALER, TRUSTED_FIRST_PARTY) and dealer not in parties:
        raise ConfigError(
            f"semi2k dealer {dealer!r} is not a party of the job {list(parties)!r}", key="dealer"
        )
    if cls is Semi2k and (softspoken_k is not None or matrix_triples is not None or mul_triples is not None):
        return Semi2k(
            party, parties, fxp_bits=fxp_bits, dealer=dealer, softspoken_k=softspoken_k or SOFTSPOKEN_K,
            matrix_triples=matrix_triples or "auto", mul_triples=mul_triples or "auto",
        )
    return cls(party, parties, fxp_bits=fxp_bits, dealer=dealer)
