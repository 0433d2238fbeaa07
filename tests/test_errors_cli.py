"""The command line explains itself (issue 13 point 9): --version, help on every flag, the
README's command table lists every flag, node --duration does not call a healthy link closed."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mpcactors
from mpcactors.cli import build_parser
from mpcactors.psi._cli import build_parser as build_psi_parser

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = {name: p for name, p in sub.choices.items() if name not in ("psi", "demo-party")}
    commands["psi"] = build_psi_parser()
    return commands


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_version():
    out = subprocess.run([sys.executable, "-m", "mpcactors", "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"mpcactors {mpcactors.__version__}"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_flag_has_help(command):
    for action in _options(_commands()[command]):
        if action.help == argparse.SUPPRESS:
            continue
        assert action.help, (command, action.option_strings)


@pytest.mark.parametrize("command", sorted(_commands()))
def test_the_readme_command_table_lists_every_flag(command):
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Command line\n", 1)[1].split("\n## ", 1)[0]
    row = next((ln for ln in table.splitlines() if ln.startswith(f"| `mpcactors {command}")), None)
    assert row is not None, command
    listed = set(re.findall(r"--[a-z][a-z-]*", row)) | {"--log-level", "--log-json"}  # said once below the table
    for action in _options(_commands()[command]):
        if action.help == argparse.SUPPRESS:
            continue
        assert action.option_strings[0] in listed, (command, action.option_strings[0], row)


def test_psi_doc_names_the_checkpoint_folder_the_code_makes(tmp_path):
    from mpcactors.psi._checkpoint import Workspace

    ws = Workspace(tmp_path, "job 1", "alice")
    assert re.fullmatch(r"job_1-[0-9a-f]{10}\.alice", ws.root.name), ws.root.name
    assert "`<dir>/<job>-<hash>.<party>/`" in (ROOT / "docs" / "PSI.md").read_text()


def test_node_duration_does_not_call_a_link_whose_peer_left_first_closed(tmp_path):
    from tests.integration.helpers import make_cluster

    cfg = make_cluster(tmp_path, parties=("alice", "bob"), protocol="semi2k")
    cmd = [sys.executable, "-m", "mpcactors", "node", "--config", str(cfg)]
    env = {**os.environ, "COLUMNS": "200"}
    bob = subprocess.Popen([*cmd, "--party", "bob", "--duration", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        alice = subprocess.run([*cmd, "--party", "alice", "--duration", "0.2"], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env, check=False)
        out, err = bob.communicate(timeout=60)
    finally:
        if bob.poll() is None:
            bob.kill()
            bob.communicate()
    assert alice.returncode == 0 and bob.returncode == 0, (alice.stderr, err)
    row = next(ln for ln in out.splitlines() if "alice" in ln and "links after" not in ln)
    assert "closed" not in row and "open" in row, out
