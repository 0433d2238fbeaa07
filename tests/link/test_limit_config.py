"""The [link] keys that bound what a peer can make a node hold (issue 10): defaults and checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpcactors import ConfigError, load_config
from mpcactors._config import LinkOptions

BASE = """cluster = "c"
protocol = "semi2k"
[parties.alice]
address = "127.0.0.1:1"
[parties.bob]
address = "127.0.0.1:2"
[link]
"""


def load(tmp_path: Path, link: str) -> LinkOptions:
    path = tmp_path / "cluster.toml"
    path.write_text(BASE + link)
    return load_config(path).link


def test_defaults_are_sane(tmp_path: Path) -> None:
    opts = load(tmp_path, "")
    assert opts.max_channels_per_job == 64
    assert opts.max_jobs_per_peer == 4096
    assert opts.max_unopened_bytes == 128 << 20 >= opts.job_window_bytes


def test_keys_are_read(tmp_path: Path) -> None:
    opts = load(tmp_path, "max_channels_per_job = 8\nmax_jobs_per_peer = 100\n"
                          "max_unopened_bytes = 33554432\n")  # fmt: skip
    assert (opts.max_channels_per_job, opts.max_jobs_per_peer, opts.max_unopened_bytes) == (
        8, 100, 32 << 20,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ("max_channels_per_job = 0", "link.max_channels_per_job", "must be a positive number"),
        ("max_jobs_per_peer = -5", "link.max_jobs_per_peer", "must be a positive number"),
        ("max_jobs_per_peer = 2.5", "link.max_jobs_per_peer", "must be an integer"),
        ("max_unopened_bytes = true", "link.max_unopened_bytes", "must be a number"),
        ("max_unopened_bytes = 1024", "link.max_unopened_bytes", "at least link.job_window_bytes"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, line: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load(tmp_path, line + "\n")
    assert info.value.key == key
    assert str(tmp_path / "cluster.toml") in str(info.value)
