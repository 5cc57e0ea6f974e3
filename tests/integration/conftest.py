"""Shared fixtures of the real-process tests."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """Four identities made once per session (per xdist worker) with ``medswarm keygen``.

    Each call starts Python, so the four run at the same time; the tests get copies
    (``hospitals``), never the files themselves.
    """
    where = tmp_path_factory.mktemp("keys")
    procs = {name: subprocess.Popen([sys.executable, "-m", "peers.cli", "keygen", "--out", str(where / f"{name}.key")],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in "abcd"}
    ids = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids[name] = out.strip()
    return where, ids


@pytest.fixture
def hospitals(tmp_path, keys):
    where, ids = keys
    for name in "abcd":
        shutil.copy2(where / f"{name}.key", tmp_path / f"{name}.key")
    members = "".join(f'[[member]]\nname = "{n}"\npeer_id = "{ids[n]}"\n' for n in "abc")  # d is not a member
    (tmp_path / "consortium.toml").write_text(members)
    return tmp_path, ids
