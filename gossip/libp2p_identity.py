"""Who a peer is on libp2p, and which peers belong to the consortium.

A hospital's identity is an Ed25519 private key kept in a file in libp2p's protobuf
private-key encoding, laid out as go-libp2p and js-libp2p write and read it::

    08 01          field 1, KeyType = Ed25519 (1)
    12 40          field 2, Data, 64 bytes long
    <32-byte seed><32-byte public key>

Files written by medswarm before (``08 01 12 20`` + the 32-byte seed alone) still load.
The peer id is derived from the public key. Ed25519 only: RSA identities break js-libp2p's
identify. Key files are written atomically (a temporary file, then a hard link that never
replaces an existing file), mode 0600.

The consortium is a TOML file that every member holds a copy of::

    [[member]]
    name = "hospital-a"
    peer_id = "12D3KooW..."

``Libp2pTransport`` refuses connections from peer ids that are not in it.

Errors: every failure raises :class:`IdentityError` with a one-line message naming the
file (missing file, unsafe file mode, malformed key, key whose public half does not match
its seed, bad TOML, bad or duplicate peer id).
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PrivateKey, create_new_key_pair
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.peer.id import ID

from gossip.errors import GossipError

log = logging.getLogger(__name__)

#: A name must be short and printable, so it can appear in a log line as is.
MAX_NAME_CHARS = 64

#: Protobuf tags of libp2p's ``PrivateKey``: field 1 varint (KeyType), field 2 bytes (Data).
_TAG_KEY_TYPE, _TAG_DATA = 0x08, 0x12
#: Lengths of an Ed25519 seed, and of the seed followed by its public key (go/js-libp2p).
SEED_BYTES, ED25519_KEY_BYTES = 32, 64


class IdentityError(GossipError):
    """A key file or consortium file is missing, unsafe or malformed.

    Attributes
    ----------
    path:
        The file concerned, or ``None`` for an in-memory value.
    reason:
        Short machine-friendly reason, e.g. ``"missing"``, ``"unsafe-mode"``, ``"bad-key"``,
        ``"wrong-key-type"``, ``"key-mismatch"``, ``"io"``, ``"bad-toml"``, ``"bad-peer-id"``,
        ``"duplicate"``, ``"exists"``.
    """

    def __init__(self, reason: str, detail: str, path: Path | None = None) -> None:
        self.reason = reason
        self.path = path
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}{detail}")


@dataclass(frozen=True)
class NodeKey:
    """An Ed25519 key pair and the peer id derived from it.

    ``key_pair`` is the libp2p object the transport hands to its host; code outside
    ``gossip/libp2p_*`` only ever needs ``peer_id``.
    """

    key_pair: KeyPair
    peer_id: str

    @classmethod
    def generate(cls) -> NodeKey:
        """A fresh random Ed25519 identity (not saved anywhere)."""
        return cls.from_pair(create_new_key_pair())

    @classmethod
    def from_pair(cls, pair: KeyPair) -> NodeKey:
        """Wrap an existing libp2p key pair, deriving its peer id."""
        return cls(pair, str(ID.from_pubkey(pair.public_key)))


def encode_private_key(private: Ed25519PrivateKey) -> bytes:
    """The go/js-libp2p key file bytes: ``08 01 12 40``, the 32-byte seed, the public key."""
    data = private.to_bytes() + private.get_public_key().to_bytes()
    return bytes([_TAG_KEY_TYPE, KeyType.Ed25519.value, _TAG_DATA, len(data)]) + data


def decode_private_key(blob: bytes, path: Path | None = None) -> Ed25519PrivateKey:
    """Read an Ed25519 private key protobuf: 64-byte go/js form or medswarm's old 32-byte seed.

    Raises
    ------
    IdentityError
        ``bad-key`` (not that protobuf, or Data neither 32 nor 64 bytes long),
        ``wrong-key-type`` (not Ed25519) or ``key-mismatch`` (the public half of a 64-byte
        key is not the one its seed gives: a corrupt or hand-edited file).
    """
    try:
        key_type, data = _parse_private_key(blob)
    except ValueError as err:
        raise IdentityError("bad-key", f"not a libp2p private key file ({err})", path) from None
    if key_type != KeyType.Ed25519.value:
        name = next((t.name for t in KeyType if t.value == key_type), f"type {key_type}")
        raise IdentityError("wrong-key-type", f"key is {name}, expected Ed25519", path)
    if len(data) not in (SEED_BYTES, ED25519_KEY_BYTES):
        raise IdentityError(
            "bad-key",
            f"Ed25519 key is {len(data)} bytes, expected {ED25519_KEY_BYTES} (seed and public key)"
            f" or {SEED_BYTES} (seed)", path)
    private = Ed25519PrivateKey.from_bytes(data[:SEED_BYTES])
    if len(data) == ED25519_KEY_BYTES and data[SEED_BYTES:] != private.get_public_key().to_bytes():
        raise IdentityError("key-mismatch", "public half of the Ed25519 key does not match"
                            " its seed (corrupt or edited file)", path)
    return private


def _parse_private_key(blob: bytes) -> tuple[int, bytes]:
    """Split ``08 <type varint> 12 <length varint> <data>``; ValueError if not.

    Fields in that order and nothing else, as go-, js- and py-libp2p all write them.
    """
    if blob[:1] != bytes([_TAG_KEY_TYPE]):
        raise ValueError("no key type field")
    key_type, pos = _read_varint(blob, 1)
    if blob[pos:pos + 1] != bytes([_TAG_DATA]):
        raise ValueError("no key data field")
    length, pos = _read_varint(blob, pos + 1)
    if pos + length != len(blob):
        raise ValueError(f"key data should be {length} bytes, file has {len(blob) - pos}")
    return key_type, blob[pos:]


def _read_varint(blob: bytes, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos`` (at most 10 bytes): ``(value, position after it)``."""
    value = 0
    for i, byte in enumerate(blob[pos:pos + 10]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("truncated varint")


def save_key(key: NodeKey, path: str | Path) -> None:
    """Write ``key`` in the go/js-libp2p layout to a new file readable by its owner only (0600).

    Raises
    ------
    IdentityError
        ``exists`` if the file is already there (an identity is never overwritten),
        ``io`` if it cannot be written.
    """
    private = key.key_pair.private_key
    if not isinstance(private, Ed25519PrivateKey):
        raise IdentityError(
            "wrong-key-type", f"key is {private.get_type().name}, expected Ed25519")
    write_secret_file(path, encode_private_key(private), "key file")


def write_secret_file(path: str | Path, data: bytes, what: str) -> None:
    """Create ``path`` with ``data``, mode 0600, atomically and durably; never overwrite.

    The bytes go to a temporary file ``.NAME.XXXX.tmp`` (mode 0600) in the same directory,
    which is fsynced and then hard-linked to ``path``: the link fails if ``path`` exists,
    so a reader sees no file or the whole file, and a killed writer leaves no half key.

    Raises
    ------
    IdentityError
        ``exists`` if ``path`` is already there, ``io`` if it cannot be written (including
        a filesystem without hard links).
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise IdentityError("exists", f"{what} already exists; refusing to overwrite", path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise IdentityError("io", f"cannot create {what} ({err.strerror})", path) from err
    try:
        try:
            os.fchmod(fd, 0o600)  # mkstemp's default, but say it: this is a secret
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
        _fsync_dir(path.parent)
    except FileExistsError:
        raise IdentityError(
            "exists", f"{what} already exists; refusing to overwrite", path) from None
    except OSError as err:
        raise IdentityError("io", f"cannot write {what} ({err.strerror})", path) from err
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable (as ``swarm.atomic_file``, which gossip can't import)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_key_file(path: str | Path) -> NodeKey:
    """Create a new identity in ``path`` (mode 0600) and return it; see :func:`save_key`."""
    key = NodeKey.generate()
    save_key(key, path)
    return key


def load_key(path: str | Path, *, allow_unsafe_mode: bool = False) -> NodeKey:
    """Read an Ed25519 identity written by :func:`save_key`, go/js-libp2p or older medswarm.

    A key file that group or others may read or write is refused, as ssh refuses an
    unprotected private key: whoever copies it can pose as this hospital. Pass
    ``allow_unsafe_mode=True`` to only log a warning instead (e.g. on a filesystem without
    POSIX modes).

    Raises
    ------
    IdentityError
        ``missing``, ``unsafe-mode``, ``io``, or those of :func:`decode_private_key`
        (``bad-key``, ``wrong-key-type``, ``key-mismatch``).
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError("missing", "key file not found", path) from None
    except OSError as err:
        raise IdentityError("io", f"cannot read key file ({err.strerror})", path) from err
    if os.name == "posix" and mode & 0o077:
        detail = f"key file mode is {stat.filemode(mode)}; run: chmod 600 {path}"
        if not allow_unsafe_mode:
            raise IdentityError("unsafe-mode", detail, path)
        log.warning("event=unsafe-key-mode path=%s mode=%o", path, mode & 0o777)
    private = decode_private_key(data, path)
    return NodeKey.from_pair(KeyPair(private, private.get_public_key()))


def parse_peer_id(text: str) -> str:
    """Check that ``text`` is a canonical base58 Ed25519 peer id (``12D3KooW...``); return it.

    Raises
    ------
    IdentityError
        ``bad-peer-id`` if it is not.
    """
    if not isinstance(text, str) or not text:
        raise IdentityError("bad-peer-id", f"peer id must be a non-empty string, got {text!r}")
    try:
        pid = ID.from_base58(text)
        key = pid.extract_public_key()
    except Exception as err:  # base58 / multihash / protobuf errors
        raise IdentityError("bad-peer-id", f"not a peer id: {text[:80]!r}") from err
    if key is None or key.get_type() != KeyType.Ed25519 or pid.to_base58() != text:
        raise IdentityError("bad-peer-id", f"not an Ed25519 peer id: {text[:80]!r}")
    return text


@dataclass(frozen=True)
class Member:
    """One consortium member: a human name for logs and its peer id."""

    name: str
    peer_id: str


class Consortium:
    """The peers allowed to talk to each other: an allow-list of peer ids.

    Build it with :meth:`from_toml` (a file) or directly from members; names and peer ids
    must both be unique.
    """

    def __init__(self, members: list[Member] | tuple[Member, ...], source: Path | None = None):
        if not members:
            raise IdentityError("empty", "consortium has no [[member]] entries", source)
        names: set[str] = set()
        by_id: dict[str, Member] = {}
        for m in members:
            if not m.name.isprintable() or not 0 < len(m.name) <= MAX_NAME_CHARS:
                raise IdentityError(
                    "bad-name",
                    f"member name must be 1-{MAX_NAME_CHARS} printable characters: {m.name[:80]!r}",
                    source,
                )
            try:
                parse_peer_id(m.peer_id)
            except IdentityError as err:
                raise IdentityError("bad-peer-id", f"member {m.name!r}: {err}", source) from None
            if m.name in names:
                raise IdentityError("duplicate", f"member name {m.name!r} appears twice", source)
            if m.peer_id in by_id:
                raise IdentityError(
                    "duplicate",
                    f"peer id of {m.name!r} is already {by_id[m.peer_id].name!r}'s",
                    source,
                )
            names.add(m.name)
            by_id[m.peer_id] = m
        self._by_id = by_id
        self.members: tuple[Member, ...] = tuple(members)

    @classmethod
    def from_toml(cls, path: str | Path) -> Consortium:
        """Load ``[[member]]`` tables (``name``, ``peer_id``) from a TOML file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise IdentityError("missing", "consortium file not found", path) from None
        except (OSError, UnicodeDecodeError) as err:
            raise IdentityError("io", f"cannot read consortium file ({err})", path) from err
        return cls.from_toml_text(text, path)

    @classmethod
    def from_toml_text(cls, text: str, source: Path | None = None) -> Consortium:
        """Parse consortium TOML already in memory (``source`` only names it in errors)."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise IdentityError("bad-toml", f"invalid TOML ({err})", source) from err
        unknown = set(doc) - {"member"}
        if unknown:
            raise IdentityError("bad-toml", f"unknown top-level keys {sorted(unknown)}", source)
        tables = doc.get("member", [])
        if not isinstance(tables, list):
            raise IdentityError("bad-toml", "'member' must be an array of [[member]] tables",
                                source)
        members = []
        for i, table in enumerate(tables):
            if not isinstance(table, dict) or set(table) != {"name", "peer_id"}:
                keys = sorted(table) if isinstance(table, dict) else type(table).__name__
                raise IdentityError(
                    "bad-toml", f"member #{i + 1} must have exactly name and peer_id, got {keys}",
                    source,
                )
            name, peer_id = table["name"], table["peer_id"]
            if not isinstance(name, str) or not isinstance(peer_id, str):
                raise IdentityError(
                    "bad-toml", f"member #{i + 1}: name and peer_id must be strings", source)
            members.append(Member(name, peer_id))
        return cls(members, source)

    def allows(self, peer_id: str) -> bool:
        """True if ``peer_id`` (base58 string) is a member."""
        return peer_id in self._by_id

    def name_of(self, peer_id: str) -> str | None:
        """The member's name, for log lines; ``None`` for a stranger."""
        m = self._by_id.get(peer_id)
        return m.name if m is not None else None

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"Consortium({[m.name for m in self.members]})"
