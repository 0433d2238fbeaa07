"""``[runtime] numpy_huge_pages``: a node sets numpy's huge-page advice for the process."""

from __future__ import annotations

import dataclasses

import pytest
import trio
from numpy._core import multiarray

import mpcactors as mpc
from mpcactors._config import RuntimeOptions, load_config
from mpcactors.link import MemoryNetwork


@pytest.fixture
def numpy_default():
    before = multiarray._get_madvise_hugepage()
    yield
    multiarray._set_madvise_hugepage(before)


@pytest.mark.parametrize("enabled", [False, True])
def test_a_node_sets_numpy_huge_pages_from_its_config(numpy_default, enabled):
    multiarray._set_madvise_hugepage(not enabled)
    config = mpc.ClusterConfig.local(["alice", "bob"], protocol="semi2k")
    config = dataclasses.replace(config, runtime=RuntimeOptions(numpy_huge_pages=enabled))
    assert _seen_by_nodes(config) == {"alice": enabled, "bob": enabled}


def _seen_by_nodes(config):
    """numpy's huge-page setting as each node of the config sees it once it has opened."""
    seen = {}

    async def main():
        network = MemoryNetwork()

        async def party(name):
            async with mpc.open_node(config, name, network=network):
                seen[name] = multiarray._get_madvise_hugepage()

        async with trio.open_nursery() as n:
            for p in config.party_names:
                n.start_soon(party, p)

    trio.run(main)
    return seen


def test_the_default_is_off_and_the_key_is_checked(tmp_path):
    assert RuntimeOptions().numpy_huge_pages is False
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'cluster = "c"\nprotocol = "semi2k"\n[runtime]\nnumpy_huge_pages = "yes"\n'
        '[parties.alice]\naddress = "127.0.0.1:7001"\n[parties.bob]\naddress = "127.0.0.1:7002"\n'
    )
    with pytest.raises(mpc.ConfigError, match=r'runtime\.numpy_huge_pages.*true, false or "auto"'):
        load_config(cfg)


@pytest.mark.parametrize("before", [False, True])
def test_auto_leaves_numpy_as_it_is(numpy_default, tmp_path, before):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'cluster = "c"\nprotocol = "semi2k"\n[runtime]\nnumpy_huge_pages = "auto"\n'
        '[parties.alice]\naddress = "127.0.0.1:7001"\n[parties.bob]\naddress = "127.0.0.1:7002"\n'
    )
    config = load_config(cfg)
    assert config.runtime.numpy_huge_pages == "auto"
    multiarray._set_madvise_hugepage(before)
    assert _seen_by_nodes(config) == {"alice": before, "bob": before}
