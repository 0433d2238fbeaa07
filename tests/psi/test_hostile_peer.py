"""A peer that breaks the protocol gets a PsiError naming it, never a bare ValueError."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mpcactors._errors import JobAborted, PsiError
from mpcactors.psi import run_psi
from mpcactors.psi._protocol import PsiSettings

from .conftest import memory_nodes


async def _hostile_bob(node: Any, job: str, point: bytes) -> None:
    """Speak PSI as bob up to the first chunk, then send ``point`` as bob's blinded id."""
    ctl, s = node.channel("alice", job, "ctl"), node.channel("alice", job, "s")
    settings = PsiSettings(keys=1, join="inner", receiver=None, left="alice", protocol="ecdh").to_msg()
    assert (await ctl.receive())["t"] == "hello"
    await ctl.send({"t": "hello", "party": "bob", "job": job, "settings": settings,
                    "session": None, "nonce": "00" * 16})
    assert (await ctl.receive())["t"] == "ready"
    await ctl.send({"t": "ready", "n": 1, "cs": 4096, "have_m": [], "have_o": []})
    await s.send({"c": 0, "v": point})
    with pytest.raises(JobAborted, match="alice"):
        while True:  # alice's own chunk stream, then her abort
            await ctl.receive()


@pytest.mark.parametrize("point", [bytes(32), (1).to_bytes(32, "little")], ids=["u=0", "u=1"])
@pytest.mark.trio
async def test_low_order_point_from_the_peer_is_a_psi_error_naming_it(point: bytes) -> None:
    async with memory_nodes("alice", "bob") as nodes:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_hostile_bob, nodes["bob"], "hostile", point)
                with pytest.raises(PsiError, match=r"from 'bob'.*low-order"):
                    await run_psi(nodes["alice"], peer="bob", job="hostile",
                                  ids=["a", "b"], workers=0, protocol="ecdh")
