"""Secure aggregation between real processes over TCP + TLS 1.3 on 127.0.0.1, with one client
crashing out after SHARE_KEYS (the server rebuilds its masks from the others' shares)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpcactors._demo import write_cluster
from mpcactors.secagg import Quantizer

from ._party import CLIENTS, SERVER, vector_of

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(180)
def test_secure_sum_between_processes_over_tls(tmp_path: Path) -> None:
    cfg = write_cluster(tmp_path, (SERVER, *CLIENTS), "semi2k")
    certs = subprocess.run(
        [sys.executable, "-m", "mpcactors", "certs", "--config", str(cfg)],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert certs.returncode == 0, certs.stderr
    out = tmp_path / "sum.npy"
    drops = {"c2": "share_keys"}
    procs = {
        p: subprocess.Popen(
            [
                sys.executable,
                str(HERE / "_party.py"),
                str(cfg),
                p,
                str(out),
                *([drops[p]] if p in drops else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in (SERVER, *CLIENTS)
    }
    try:
        for p, proc in procs.items():
            _, err = proc.communicate(timeout=150)
            assert proc.returncode == 0, f"{p} failed:\n{err[-3000:]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    q = Quantizer(8.0, 16, 32)
    total = np.zeros(1000, dtype=q.dtype)
    for c in ("c1", "c3"):
        total += q.quantise(vector_of(c))[0]
    assert np.array_equal(np.load(out), q.dequantise(total))
