"""The PSI table off a terminal: columns say what they count, and nothing is cut (issue 13
points 7 and 9)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from mpcactors import PsiError
from mpcactors.psi._cli import _JobSpec, _report


def test_failed_jobs_are_printed_whole_and_columns_are_named(monkeypatch, capsys):
    long_path = "/data/" + "very-long-folder-name/" * 8 + "customers.csv"
    error = PsiError(f"{long_path}: key column 'customer_id' not in the header ['id', 'name', 'email', 'phone']")
    spec = _JobSpec(job="j1", input=long_path, output="/out/alice.csv", keys="customer_id")
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # not a terminal
    args = argparse.Namespace(summary_json=False, party="alice")
    _report(args, [spec], {"j1": error})
    table = sys.stdout.getvalue()
    err = capsys.readouterr().err
    assert "output rows" in table and "keys in common" in table
    assert long_path in table  # not cut to 80 columns
    assert f"mpcactors psi: job 'j1' failed: PsiError: {error}" in err
    assert Path(long_path).name in table
