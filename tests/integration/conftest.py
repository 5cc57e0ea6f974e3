"""Shared fixtures of the real-process tests."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Four identities made once per module with ``medswarm keygen`` (each call starts Python)."""
    where, ids = tmp_path_factory.mktemp("keys"), {}
    for name in "abcd":
        out = subprocess.run([sys.executable, "-m", "peers.cli", "keygen", "--out", str(where / f"{name}.key")],
                             capture_output=True, text=True, check=True)
        ids[name] = out.stdout.strip()
    return where, ids


@pytest.fixture
def hospitals(tmp_path, keys):
    where, ids = keys
    for name in "abcd":
        shutil.copy2(where / f"{name}.key", tmp_path / f"{name}.key")
    members = "".join(f'[[member]]\nname = "{n}"\npeer_id = "{ids[n]}"\n' for n in "abc")  # d is not a member
    (tmp_path / "consortium.toml").write_text(members)
    return tmp_path, ids
