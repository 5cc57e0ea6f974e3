"""Key file bytes: the go/js-libp2p protobuf layout, old medswarm files, refused files.

Expected bytes and peer ids are built here without libp2p: the public key comes from the
``cryptography`` package, the peer id is base58 of the identity multihash of the public key
protobuf, and one vector was written by js-libp2p (``@libp2p/crypto`` 5.1).
"""

from __future__ import annotations

import os
import stat

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as RefKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from libp2p.crypto.ed25519 import create_new_key_pair

from gossip.libp2p_identity import (
    IdentityError,
    NodeKey,
    decode_private_key,
    encode_private_key,
    generate_key_file,
    load_key,
    save_key,
)

SEED = bytes(range(32))
#: peer id of SEED as js-libp2p computes it (peerIdFromPrivateKey on our file)
SEED_PEER_ID = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
#: a key file written by js-libp2p's privateKeyToProtobuf, and its peer id there
JS_KEY_FILE = bytes.fromhex(
    "08011240db413f6fe70fbd603c35c8fc6b3f294fa4503ccd8e8dafad75199871a49af533"
    "04321a0e9f7ea15107e36024a9f6ca115968785030f621ff4ab8be1cb90e66e9")
JS_PEER_ID = "12D3KooWA6k7KsWRoCFMhFFWamzvawJpswhKmng8nTYhNQrAqgsi"


def public_key_of(seed: bytes) -> bytes:
    return RefKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def peer_id_of(public: bytes) -> str:
    protobuf = bytes([0x08, 0x01, 0x12, 0x20]) + public  # PublicKey{Ed25519, 32 bytes}
    return base58.b58encode(bytes([0x00, len(protobuf)]) + protobuf).decode()  # identity hash


def key_file(tmp_path, blob: bytes, name: str = "node.key"):
    path = tmp_path / name
    path.write_bytes(blob)
    path.chmod(0o600)
    return path


def fixed_key() -> NodeKey:
    return NodeKey.from_pair(create_new_key_pair(SEED))


def test_a_saved_key_is_byte_for_byte_the_go_js_layout(tmp_path):
    save_key(fixed_key(), tmp_path / "node.key")
    expected = bytes([0x08, 0x01, 0x12, 0x40]) + SEED + public_key_of(SEED)
    assert (tmp_path / "node.key").read_bytes() == expected


def test_the_peer_id_matches_the_independent_derivation_and_js_libp2p():
    assert fixed_key().peer_id == peer_id_of(public_key_of(SEED)) == SEED_PEER_ID


def test_a_js_libp2p_key_file_loads_to_the_peer_id_js_libp2p_gives(tmp_path):
    key = load_key(key_file(tmp_path, JS_KEY_FILE))
    assert key.peer_id == JS_PEER_ID
    assert encode_private_key(key.key_pair.private_key) == JS_KEY_FILE


def test_a_generated_key_file_round_trips(tmp_path):
    path = tmp_path / "node.key"
    key = generate_key_file(path)
    loaded = load_key(path)
    assert loaded.peer_id == key.peer_id
    assert loaded.key_pair.private_key.to_bytes() == key.key_pair.private_key.to_bytes()
    assert encode_private_key(loaded.key_pair.private_key) == path.read_bytes()


def test_an_old_seed_only_key_file_still_loads_to_the_same_peer_id(tmp_path):
    old = bytes([0x08, 0x01, 0x12, 0x20]) + SEED
    assert create_new_key_pair(SEED).private_key.serialize() == old  # what medswarm wrote
    assert load_key(key_file(tmp_path, old)).peer_id == SEED_PEER_ID


def test_a_key_whose_public_half_does_not_match_its_seed_is_refused(tmp_path):
    other = public_key_of(bytes(32))
    path = key_file(tmp_path, bytes([0x08, 0x01, 0x12, 0x40]) + SEED + other)
    with pytest.raises(IdentityError, match="public half .* does not match its seed") as info:
        load_key(path)
    assert info.value.reason == "key-mismatch" and info.value.path == path
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


GOOD = bytes([0x08, 0x01, 0x12, 0x40]) + SEED + public_key_of(SEED)


@pytest.mark.parametrize("blob", [
    b"",
    b"not a key",
    bytes(68),
    GOOD[:1], GOOD[:2], GOOD[:3], GOOD[:4], GOOD[:-1],  # truncated
    GOOD + b"\x00",  # trailing byte
    bytes([0x08, 0x01, 0x12, 0x10]) + SEED[:16],  # neither 32 nor 64 bytes of key
    bytes([0x08, 0x01, 0x12, 0x60]) + GOOD[4:] + public_key_of(SEED),  # 96 bytes
    bytes([0x08, 0x81]),  # varint runs off the end
], ids=lambda b: b[:6].hex() + f"..{len(b)}B")
def test_a_truncated_or_garbled_key_file_is_refused_in_one_line_naming_it(tmp_path, blob):
    path = key_file(tmp_path, blob)
    with pytest.raises(IdentityError) as info:
        load_key(path)
    assert info.value.reason == "bad-key" and info.value.path == path
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


@pytest.mark.parametrize(("blob", "name"), [
    (bytes([0x08, 0x02, 0x12, 0x20]) + SEED, "Secp256k1"),
    (bytes([0x08, 0x00, 0x12, 0xA0, 0x01]) + bytes(160), "RSA"),  # two-byte length varint
])
def test_a_key_of_another_type_is_refused_naming_the_type(tmp_path, blob, name):
    with pytest.raises(IdentityError, match=f"key is {name}, expected Ed25519") as info:
        load_key(key_file(tmp_path, blob))
    assert info.value.reason == "wrong-key-type"


def test_decode_of_encode_is_identity():
    private = create_new_key_pair().private_key
    assert decode_private_key(encode_private_key(private)).to_bytes() == private.to_bytes()


def test_a_key_file_is_0600_and_leaves_no_temporary_file_even_under_umask_0(tmp_path):
    old_umask = os.umask(0)
    try:
        generate_key_file(tmp_path / "node.key")
    finally:
        os.umask(old_umask)
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600


def test_refusing_to_overwrite_leaves_the_old_key_and_no_temporary_file(tmp_path):
    path = tmp_path / "node.key"
    save_key(fixed_key(), path)
    with pytest.raises(IdentityError) as info:
        generate_key_file(path)
    assert info.value.reason == "exists"
    assert load_key(path).peer_id == SEED_PEER_ID
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]


def test_a_failed_write_leaves_neither_a_key_file_nor_a_temporary_file(tmp_path, monkeypatch):
    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(IdentityError, match="No space left") as info:
        generate_key_file(tmp_path / "node.key")
    assert info.value.reason == "io"
    assert list(tmp_path.iterdir()) == []
