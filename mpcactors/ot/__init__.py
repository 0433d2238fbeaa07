"""Oblivious transfer: Chou-Orlandi base OT, IKNP/KKRT OT extension, the KKRT batched OPRF.

Every protocol is a sans-IO step (a generator yielding :class:`~mpcactors.ops.Exchange`), run by
the executor over a link or by :func:`~mpcactors.ops._comm.run_local` in tests. Set up once per
pair of parties and direction, then extend as often as needed (the PRG streams advance)::

    snd = yield from ext_sender_setup("bob")            # at alice
    x0, x1 = yield from rot_send("bob", snd, m)         # random OT
    rcv = yield from ext_receiver_setup("alice")        # at bob
    xc = yield from rot_receive("alice", rcv, choices)

See docs/OT.md for the protocols, their parameters and citations.
"""

from __future__ import annotations

from ._base import OtError, base_ot_receive, base_ot_send
from ._extension import (
    ExtReceiver,
    ExtSender,
    cot_receive,
    cot_send,
    ext_receiver_setup,
    ext_sender_setup,
    extend_receive,
    extend_send,
    ot_receive,
    ot_send,
    rot_receive,
    rot_send,
)
from ._kernels import transpose_bits
from ._kkrt import (
    KKRT_WIDTH,
    KkrtReceiver,
    KkrtSender,
    PseudoRandomCode,
    coin_toss,
    kkrt_receiver_setup,
    kkrt_sender_setup,
    oprf_receive,
    oprf_send,
)

__all__ = [
    "KKRT_WIDTH",
    "ExtReceiver",
    "ExtSender",
    "KkrtReceiver",
    "KkrtSender",
    "OtError",
    "PseudoRandomCode",
    "base_ot_receive",
    "base_ot_send",
    "coin_toss",
    "cot_receive",
    "cot_send",
    "ext_receiver_setup",
    "ext_sender_setup",
    "extend_receive",
    "extend_send",
    "kkrt_receiver_setup",
    "kkrt_sender_setup",
    "oprf_receive",
    "oprf_send",
    "ot_receive",
    "ot_send",
    "rot_receive",
    "rot_send",
    "transpose_bits",
]
