"""Who a peer is on libp2p, and which peers belong to the consortium.

A hospital's identity is an Ed25519 private key kept in a file (libp2p's protobuf
private-key encoding, the format go-libp2p and js-libp2p read too); its peer id is derived
from the public key. Ed25519 only: RSA identities break js-libp2p's identify.

The consortium is a TOML file that every member holds a copy of::

    [[member]]
    name = "hospital-a"
    peer_id = "12D3KooW..."

``Libp2pTransport`` refuses connections from peer ids that are not in it.

Errors: every failure raises :class:`IdentityError` with a one-line message naming the
file (missing file, unsafe file mode, bad TOML, bad or duplicate peer id).
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.peer.id import ID

from gossip.errors import GossipError

log = logging.getLogger(__name__)

#: A name must be short and printable, so it can appear in a log line as is.
MAX_NAME_CHARS = 64


class IdentityError(GossipError):
    """A key file or consortium file is missing, unsafe or malformed.

    Attributes
    ----------
    path:
        The file concerned, or ``None`` for an in-memory value.
    reason:
        Short machine-friendly reason, e.g. ``"missing"``, ``"unsafe-mode"``, ``"bad-key"``,
        ``"bad-toml"``, ``"bad-peer-id"``, ``"duplicate"``, ``"exists"``.
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
        pair = create_new_key_pair()
        return cls(pair, str(ID.from_pubkey(pair.public_key)))


def save_key(key: NodeKey, path: str | Path) -> None:
    """Write ``key`` to a new file readable by its owner only (mode 0600).

    Raises
    ------
    IdentityError
        ``exists`` if the file is already there (an identity is never overwritten),
        ``io`` if it cannot be written.
    """
    write_secret_file(path, key.key_pair.private_key.serialize(), "key file")


def write_secret_file(path: str | Path, data: bytes, what: str) -> None:
    """Create ``path`` with ``data``, mode 0600, fsynced; never overwrite (``exists``)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise IdentityError("exists", f"{what} already exists; refusing to overwrite", path)
    except OSError as err:
        raise IdentityError("io", f"cannot create {what} ({err.strerror})", path) from err
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits, never added them; be explicit
        os.write(fd, data)
        os.fsync(fd)
    except OSError as err:
        raise IdentityError("io", f"cannot write {what} ({err.strerror})", path) from err
    finally:
        os.close(fd)


def generate_key_file(path: str | Path) -> NodeKey:
    """Create a new identity in ``path`` (mode 0600) and return it; see :func:`save_key`."""
    key = NodeKey.generate()
    save_key(key, path)
    return key


def load_key(path: str | Path, *, allow_unsafe_mode: bool = False) -> NodeKey:
    """Read an Ed25519 identity written by :func:`save_key` (or by go/js-libp2p).

    A key file that group or others may read or write is refused, as ssh refuses an
    unprotected private key: whoever copies it can pose as this hospital. Pass
    ``allow_unsafe_mode=True`` to only log a warning instead (e.g. on a filesystem without
    POSIX modes).

    Raises
    ------
    IdentityError
        ``missing``, ``unsafe-mode``, ``io``, ``bad-key`` (not a libp2p private key) or
        ``wrong-key-type`` (not Ed25519).
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
    try:
        private = deserialize_private_key(data)
    except Exception as err:  # protobuf / nacl raise assorted types: translate them all
        raise IdentityError("bad-key", "not a libp2p private key file", path) from err
    if private.get_type() != KeyType.Ed25519:
        raise IdentityError(
            "wrong-key-type", f"key is {private.get_type().name}, expected Ed25519", path
        )
    pair = KeyPair(private, private.get_public_key())
    return NodeKey(pair, str(ID.from_pubkey(pair.public_key)))


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
