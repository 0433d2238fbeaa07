"""Private set intersection as concurrent jobs on an mpcactors node: KKRT16 OT-extension PSI
(the default) or ECDH over X25519 (``protocol="ecdh"``).

``await run_psi(node, peer=..., job=..., ids=[...])`` or with ``input=`` a CSV and ``keys=``;
``psi_cli(argv)`` is ``mpcactors psi``. See docs/PSI.md for the protocol, the join semantics
of each party's output, checkpoints and the memory bound.
"""

from __future__ import annotations

from ._api import DEFAULT_CHUNK_SIZE, PsiResult, run_psi
from ._cli import psi_cli
from ._progress import PsiProgress, RichPsiProgress
from ._protocol import JOINS

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "JOINS",
    "PsiProgress",
    "PsiResult",
    "RichPsiProgress",
    "psi_cli",
    "run_psi",
]
