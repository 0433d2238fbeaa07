"""The public PSI names are few on purpose: this pins them."""

from __future__ import annotations

import inspect

from mpcactors import psi


def test_exported_names() -> None:
    assert sorted(psi.__all__) == [
        "DEFAULT_CHUNK_SIZE", "JOINS", "PsiProgress", "PsiResult", "RichPsiProgress", "psi_cli",
        "run_psi",
    ]


def test_run_psi_signature() -> None:
    params = inspect.signature(psi.run_psi).parameters
    assert list(params) == [
        "node", "peer", "job", "ids", "input", "keys", "output", "receiver", "join", "progress",
        "checkpoint_dir", "chunk_size", "workers", "left", "start_timeout", "protocol",
    ]
    assert params["protocol"].default == "kkrt"
    assert all(p.kind is p.KEYWORD_ONLY for name, p in params.items() if name != "node")
    assert psi.JOINS == ("inner", "left", "right", "full", "difference")
