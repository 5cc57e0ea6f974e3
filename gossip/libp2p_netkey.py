"""An optional pre-shared network key: a private swarm that strangers cannot even handshake with.

With a network key every TCP connection is wrapped in a stream cipher keyed by the shared
secret before Noise starts (libp2p "pnet"), so a host without the key fails at the first
bytes, whatever its peer id. It is a second fence around the consortium allow-list, not a
replacement: the allow-list still decides who may join. The file uses go-libp2p's
``swarm.key`` layout::

    /key/swarm/psk/1.0.0/
    /base16/
    <64 hex digits>

py-libp2p 0.8.1 implements pnet with Salsa20 and an 8-byte nonce where go/js-libp2p use
XSalsa20 with a 24-byte nonce, so a network key only works between medswarm peers: leave it
out when other libp2p implementations must connect.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from gossip.libp2p_identity import IdentityError, write_secret_file

HEADER = "/key/swarm/psk/1.0.0/"
ENCODING = "/base16/"
_HEX = re.compile(r"[0-9a-fA-F]{64}")


def generate_network_key_file(path: str | Path) -> None:
    """Write a fresh random 32-byte network key to a new file (mode 0600)."""
    write_secret_file(path, f"{HEADER}\n{ENCODING}\n{os.urandom(32).hex()}\n".encode(), "network key file")


def load_network_key(path: str | Path) -> bytes:
    """The 32-byte key in a ``swarm.key`` file; ``IdentityError`` if missing, readable by
    others (``unsafe-mode``) or malformed (``bad-network-key``)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise IdentityError("missing", "network key file not found", path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise IdentityError("io", f"cannot read network key file ({err})", path) from err
    if os.name == "posix" and mode & 0o077:
        raise IdentityError("unsafe-mode", f"network key file mode is {stat.filemode(mode)}; run: chmod 600 {path}",
                            path)
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) != 3 or lines[0] != HEADER or lines[1] != ENCODING or not _HEX.fullmatch(lines[2]):
        raise IdentityError("bad-network-key", f"expected {HEADER}, {ENCODING} and 64 hex digits on three lines",
                            path)
    return bytes.fromhex(lines[2])
