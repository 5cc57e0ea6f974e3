"""Key files and the consortium allow-list (``gossip.libp2p_identity``)."""

from __future__ import annotations

import os
import stat

import pytest

from gossip.libp2p_identity import (
    Consortium,
    IdentityError,
    Member,
    NodeKey,
    generate_key_file,
    load_key,
    parse_peer_id,
)


def test_a_generated_key_file_is_private_and_loads_back_to_the_same_peer_id(tmp_path):
    path = tmp_path / "node.key"
    key = generate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path).peer_id == key.peer_id
    assert key.peer_id.startswith("12D3KooW")  # Ed25519 identity multihash


def test_an_existing_key_file_is_never_overwritten(tmp_path):
    path = tmp_path / "node.key"
    first = generate_key_file(path)
    with pytest.raises(IdentityError, match="refusing to overwrite") as info:
        generate_key_file(path)
    assert info.value.reason == "exists"
    assert load_key(path).peer_id == first.peer_id


def test_a_key_file_readable_by_others_is_refused_unless_allowed(tmp_path, caplog):
    path = tmp_path / "node.key"
    key = generate_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600") as info:
        load_key(path)
    assert info.value.reason == "unsafe-mode" and info.value.path == path
    assert load_key(path, allow_unsafe_mode=True).peer_id == key.peer_id
    assert "event=unsafe-key-mode" in caplog.text


@pytest.mark.parametrize(("content", "reason"), [(None, "missing"), (b"not a key", "bad-key")])
def test_a_missing_or_garbled_key_file_raises_one_line(tmp_path, content, reason):
    path = tmp_path / "node.key"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)
    with pytest.raises(IdentityError) as info:
        load_key(path)
    assert info.value.reason == reason and "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_peer_ids_must_be_canonical_ed25519_ids():
    good = NodeKey.generate().peer_id
    assert parse_peer_id(good) == good
    for bad in ["", "hello", good[:-1], good + "x",
                "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"]:  # an RSA-style id
        with pytest.raises(IdentityError, match="peer id"):
            parse_peer_id(bad)


def members_toml(*pairs: tuple[str, str]) -> str:
    return "".join(f'[[member]]\nname = "{n}"\npeer_id = "{p}"\n\n' for n, p in pairs)


def test_a_consortium_file_allows_exactly_its_members(tmp_path):
    a, b, stranger = (NodeKey.generate().peer_id for _ in range(3))
    path = tmp_path / "consortium.toml"
    path.write_text(members_toml(("hospital-a", a), ("hospital-b", b)))
    consortium = Consortium.from_toml(path)
    assert consortium.allows(a) and consortium.allows(b) and not consortium.allows(stranger)
    assert consortium.name_of(b) == "hospital-b" and consortium.name_of(stranger) is None
    assert len(consortium) == 2


@pytest.mark.parametrize(("text", "match"), [
    ("[[member]\nname = 1", "invalid TOML"),
    ("", "no \\[\\[member\\]\\] entries"),
    ('member = "x"', "array of"),
    ('[[member]]\nname = "a"\n', "exactly name and peer_id"),
    ('[[member]]\nname = "a"\npeer_id = "nope"\n', "member 'a'.*peer id"),
    ('[hospital]\nname = "a"\n', "unknown top-level keys"),
])
def test_a_bad_consortium_file_raises_one_line_naming_the_file(tmp_path, text, match):
    path = tmp_path / "consortium.toml"
    path.write_text(text)
    with pytest.raises(IdentityError, match=match) as info:
        Consortium.from_toml(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_duplicate_names_or_peer_ids_are_refused():
    a, b = NodeKey.generate().peer_id, NodeKey.generate().peer_id
    with pytest.raises(IdentityError, match="appears twice"):
        Consortium([Member("x", a), Member("x", b)])
    with pytest.raises(IdentityError, match="already 'x'"):
        Consortium([Member("x", a), Member("y", a)])


def test_a_missing_consortium_file_raises(tmp_path):
    with pytest.raises(IdentityError, match="not found"):
        Consortium.from_toml(tmp_path / "nope.toml")
