"""Encryption at rest for service definitions: AES-256-GCM with a 256-bit key.

Key source, first match wins:

1. ``MSTREAM_ENC_KEY``: 64 hex characters (32 bytes).
2. The key file ``[system].encryption_key_path`` (``MSTREAM_KEY_FILE`` overrides the path):
   32 raw bytes (or 64 hex characters). When it does not exist it is created with 32
   random bytes and mode ``0600``.

Blob format (all of it authenticated)::

    b"MSE1" | key id (4 bytes) | nonce (12 bytes) | ciphertext + GCM tag (16 bytes)

* ``key id`` is the first 4 bytes of ``SHA-256(b"mstream-key-id" + key)``: it tells a
  wrong key ("cannot decrypt ... with this key") from a damaged blob without revealing
  anything useful about the key.
* The associated data is the 8-byte header plus the caller's context (the registry passes
  ``b"service:" + name``), so a blob copied to another service name fails to decrypt.

Example:
    >>> cipher = Cipher(bytes(range(32)))
    >>> blob = cipher.encrypt(b'{"password": "s3cret"}', b"service:db")
    >>> blob[:4], b"s3cret" in blob
    (b'MSE1', False)
    >>> cipher.decrypt(blob, b"service:db")
    b'{"password": "s3cret"}'
    >>> try:
    ...     cipher.decrypt(blob, b"service:other")
    ... except DecryptError as exc:
    ...     print(type(exc).__name__)
    TamperedError
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mstream.errors import ConfigError, StoreError

log = logging.getLogger("mstream.crypto")

MAGIC = b"MSE1"
KEY_ID_SIZE = 4
NONCE_SIZE = 12
TAG_SIZE = 16
HEADER_SIZE = len(MAGIC) + KEY_ID_SIZE
KEY_SIZE = 32
ENV_KEY = "MSTREAM_ENC_KEY"
ENV_KEY_FILE = "MSTREAM_KEY_FILE"
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


class DecryptError(StoreError):
    """A stored blob cannot be decrypted."""


class WrongKeyError(DecryptError):
    """The blob was encrypted with another key."""


class TamperedError(DecryptError):
    """The blob was changed (or moved to another name) after it was written."""


def key_id(key: bytes) -> bytes:
    """A short, non-secret fingerprint of ``key`` (4 bytes).

    Example:
        >>> len(key_id(bytes(32)))
        4
    """
    return hashlib.sha256(b"mstream-key-id" + key).digest()[:KEY_ID_SIZE]


class Cipher:
    """AES-256-GCM with the blob format of this module.

    Args:
        key: 32 bytes.

    Raises:
        ConfigError: the key is not 32 bytes.

    Example:
        >>> c = Cipher(bytes(32))
        >>> c.decrypt(c.encrypt(b"x", b"ctx"), b"ctx")
        b'x'
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ConfigError(f"encryption key must be {KEY_SIZE} bytes (got {len(key)})")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)

    @classmethod
    def random(cls) -> Cipher:
        """A cipher with a fresh random key (for in-memory registries).

        Example:
            >>> Cipher.random().key_id != Cipher.random().key_id
            True
        """
        return cls(secrets.token_bytes(KEY_SIZE))

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``context`` (e.g. ``b"service:NAME"``)."""
        header = MAGIC + self.key_id
        nonce = secrets.token_bytes(NONCE_SIZE)
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        """Decrypt a blob written by :meth:`encrypt` with the same ``context``.

        Raises:
            WrongKeyError: the blob was written with another key.
            TamperedError: the blob is damaged, truncated, or bound to another context.
        """
        if len(blob) < HEADER_SIZE + NONCE_SIZE + TAG_SIZE or not blob.startswith(MAGIC):
            raise TamperedError("not an mstream encrypted blob (damaged or truncated)")
        header = blob[:HEADER_SIZE]
        if header[len(MAGIC) :] != self.key_id:
            raise WrongKeyError(
                "encrypted with another key (key id "
                f"{header[len(MAGIC) :].hex()}, this key's id is {self.key_id.hex()})"
            )
        nonce = blob[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, blob[HEADER_SIZE + NONCE_SIZE :], header + context)
        except InvalidTag:
            raise TamperedError(
                "authentication tag mismatch: the data was modified or belongs to another name"
            ) from None


def parse_hex_key(text: str, source: str) -> bytes:
    """A 32-byte key from 64 hex characters.

    Raises:
        ConfigError: ``text`` is not 64 hex characters (the message names ``source``, never
            the value).

    Example:
        >>> len(parse_hex_key("00" * 32, "MSTREAM_ENC_KEY"))
        32
        >>> parse_hex_key("xyz", "MSTREAM_ENC_KEY")
        Traceback (most recent call last):
        ...
        mstream.errors.ConfigError: MSTREAM_ENC_KEY: expected 64 hex characters (a 256-bit key)
    """
    value = text.strip()
    if not _HEX_KEY.match(value):
        raise ConfigError(f"{source}: expected 64 hex characters (a 256-bit key)")
    return bytes.fromhex(value)


def read_key_file(path: Path) -> bytes:
    """Read a key file: 32 raw bytes or 64 hex characters.

    Raises:
        ConfigError: unreadable, or neither format.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"encryption key file {str(path)!r}: cannot read ({exc.strerror})"
        ) from None
    if len(data) == KEY_SIZE:
        return data
    try:
        return parse_hex_key(data.decode("ascii"), f"encryption key file {str(path)!r}")
    except UnicodeDecodeError:
        raise ConfigError(
            f"encryption key file {str(path)!r}: expected 32 bytes or 64 hex characters "
            f"(got {len(data)} bytes)"
        ) from None


def create_key_file(path: Path) -> bytes:
    """Create ``path`` with 32 random bytes, mode ``0600`` (never overwriting a file).

    Raises:
        ConfigError: the file cannot be created.

    Example:
        >>> import tempfile, stat
        >>> p = Path(tempfile.mkdtemp()) / "k.key"
        >>> len(create_key_file(p)), oct(stat.S_IMODE(p.stat().st_mode))
        (32, '0o600')
    """
    key = secrets.token_bytes(KEY_SIZE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_key_file(path)
    except OSError as exc:
        raise ConfigError(
            f"encryption key file {str(path)!r}: cannot create ({exc.strerror}); set "
            f"{ENV_KEY} or [system].encryption_key_path to a writable place"
        ) from None
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits, never added: make it exact
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("created a new encryption key file %s (mode 0600)", path)
    return key


def load_key(key_path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> bytes:
    """The service-registry key: ``MSTREAM_ENC_KEY``, else the key file (created if missing).

    Args:
        key_path: ``[system].encryption_key_path``; ``MSTREAM_KEY_FILE`` overrides it.
        environ: the environment (``os.environ`` when omitted).

    Raises:
        ConfigError: a malformed key or an unusable key file.

    Example:
        >>> load_key("/nonexistent/k", {"MSTREAM_ENC_KEY": "ab" * 32}) == bytes([0xAB]) * 32
        True
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_KEY):
        return parse_hex_key(env[ENV_KEY], ENV_KEY)
    path = Path(env.get(ENV_KEY_FILE) or key_path)
    if not path.exists():
        return create_key_file(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "encryption key file %s is readable by others (mode %s); use 0600", path, oct(mode)
        )
    return read_key_file(path)
