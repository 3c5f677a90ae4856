"""The service registry: named connections from the config file and the API, encrypted at rest.

Every service definition is kept in the service store as one AES-256-GCM blob (see
:mod:`mstream.crypto`) whose associated data binds it to the service's name. Responses
and log lines only ever see :func:`mask_service` output.

Masking rules (:func:`mask_options`):

* the provider's ``ProviderSpec.secret_fields``;
* any key (at any depth) whose lower-cased name contains ``password``, ``secret``,
  ``token``, ``key_path``, ``private_key``, ``api_key`` or ``credentials`` (this covers
  ``sasl.password``, ``ssl.key.password``, ``account_key_path``, ...);
* credentials inside URLs in any string value: ``mongodb://user:pass@host`` becomes
  ``mongodb://user:****@host``, and query parameters whose names contain ``password``,
  ``secret`` or ``token`` get ``****`` as value.

Example:
    >>> mask_connection_string("mongodb://app:hunter2@db1:27017/?tls=true")
    'mongodb://app:****@db1:27017/?tls=true'
    >>> mask_options({"sasl.username": "u", "sasl.password": "p",
    ...               "auth": {"kind": "x", "account_key_path": "/k.json"}})
    {'sasl.username': 'u', 'sasl.password': '****',
     'auth': {'kind': 'x', 'account_key_path': '****'}}
    >>> reg = ServiceRegistry.in_memory()
    >>> reg.add(ServiceConfig("db", "file", {"base_dir": "/tmp"}))
    >>> sorted(reg.all())
    ['db']
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from mstream.config.model import ServiceConfig
from mstream.crypto import Cipher, DecryptError, TamperedError, WrongKeyError
from mstream.errors import ConflictError, NotFoundError, StoreError
from mstream.masking import MASK, mask_and_cap, mask_connection_string, mask_text
from mstream.stores import MemoryServiceStore, ServiceStore

log = logging.getLogger("mstream.registry")

SECRET_KEY_PARTS = (
    "password",
    "secret",
    "token",
    "key_path",
    "private_key",
    "api_key",
    "credentials",
)


def is_secret_key(key: str) -> bool:
    """Whether an option name holds a secret by the generic rules.

    Example:
        >>> [is_secret_key(k) for k in ("sasl.password", "db_name", "auth_token", "key_path")]
        [True, False, True, True]
    """
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_connection_string(value)
    if isinstance(value, Mapping):
        return mask_options(value)
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


def mask_options(options: Mapping[str, Any], secret_fields: Iterable[str] = ()) -> dict[str, Any]:
    """A copy of ``options`` with every secret replaced by ``****``.

    Example:
        >>> opts = {"connection_string": "mongodb://u:p@h", "db_name": "x", "pin": 1}
        >>> mask_options(opts, ["pin"])
        {'connection_string': 'mongodb://u:****@h', 'db_name': 'x', 'pin': '****'}
    """
    declared = set(secret_fields)
    out: dict[str, Any] = {}
    for key, value in options.items():
        if (key in declared or is_secret_key(str(key))) and value not in (None, ""):
            out[key] = MASK
        else:
            out[key] = _mask_value(value)
    return out


def secret_fields_of(provider: str) -> frozenset[str]:
    """The provider's declared secret fields (empty when the provider is unavailable)."""
    from mstream.providers import get_provider

    try:
        return get_provider(provider).secret_fields
    except Exception:  # an unavailable provider must not break masking: generic rules apply
        return frozenset()


def mask_service(service: ServiceConfig) -> dict[str, Any]:
    """The service as a config entry, secrets masked: safe for responses and logs.

    Example:
        >>> mask_service(ServiceConfig("k", "kafka", {"sasl.password": "pw"}))
        {'name': 'k', 'provider': 'kafka', 'sasl.password': '****'}
    """
    masked = mask_options(service.options, secret_fields_of(service.provider))
    return {"name": service.name, "provider": service.provider, **masked}


def _collect_secrets(
    options: Mapping[str, Any], declared: frozenset[str], found: set[str], *, inside: bool = False
) -> None:
    """Add the secret values of ``options`` to ``found``: the values of declared secret
    fields (every string inside one that is a table, such as ``headers``), of keys that look
    secret, and passwords in connection strings."""
    for key, value in options.items():
        if isinstance(value, Mapping):
            _collect_secrets(value, declared, found, inside=inside or key in declared)
        elif isinstance(value, str) and inside:
            if len(value) >= 4:
                found.add(value)
        elif isinstance(value, str):
            if key in declared or is_secret_key(str(key)):
                if len(value) >= 4:
                    found.add(value)
            else:
                start = value.find("://")
                at = value.rfind("@")
                if 0 <= start < at and ":" in value[start + 3 : at]:
                    password = value[start + 3 : at].split(":", 1)[1]
                    if len(password) >= 4:
                        found.add(password)


def _context(name: str) -> bytes:
    return b"service:" + name.encode("utf-8")


class ServiceRegistry:
    """Services by name, persisted encrypted in a :class:`~mstream.stores.ServiceStore`.

    Args:
        store: where the encrypted blobs live.
        cipher: the AES-256-GCM cipher (the key from ``MSTREAM_ENC_KEY`` or the key file).
        key_source: a description of where the key came from, for error messages.

    Example:
        >>> reg = ServiceRegistry(MemoryServiceStore(), Cipher.random())
        >>> reg.add(ServiceConfig("m", "mongodb", {"connection_string": "mongodb://u:pw@h"}))
        >>> b"pw@h" in reg.store.get("m")
        False
        >>> reg.masked("m")["connection_string"]
        'mongodb://u:****@h'
    """

    def __init__(self, store: ServiceStore, cipher: Cipher, *, key_source: str = "the key") -> None:
        self.store = store
        self.cipher = cipher
        self.key_source = key_source
        self._services: dict[str, ServiceConfig] = {}
        self._origin: dict[str, str] = {}
        self._created: dict[str, float] = {}
        self._secrets: set[str] = set()
        # what the log filter reads on every record, from any thread, without a lock:
        # an immutable snapshot swapped whenever the secrets change
        self._secret_snapshot: frozenset[str] = frozenset()
        self._pending: set[str] = set()  # names whose store write is in progress
        self._lock = threading.RLock()

    @classmethod
    def in_memory(cls, services: Iterable[ServiceConfig] = ()) -> ServiceRegistry:
        """A registry in memory with a random key, holding ``services`` (origin ``file``)."""
        registry = cls(MemoryServiceStore(), Cipher.random(), key_source="a random key")
        for service in services:
            registry.add(service, origin="file", replace=True)
        return registry

    # -- persistence ---------------------------------------------------------------------

    def load(self) -> int:
        """Read and decrypt every stored service; returns how many were loaded.

        Raises:
            DecryptError: a blob was written with another key or was tampered with; the
                message names the service(s), never a secret.
            StoreError: the store failed or a blob holds unreadable data.
        """
        blobs = self.store.all()
        wrong: list[str] = []
        tampered: list[str] = []
        loaded: dict[str, tuple[ServiceConfig, str, float]] = {}
        for name, blob in blobs.items():
            try:
                plain = self.cipher.decrypt(blob, _context(name))
            except WrongKeyError:
                wrong.append(name)
                continue
            except TamperedError:
                tampered.append(name)
                continue
            try:
                record = json.loads(plain)
                raw = dict(record["service"])
                service = ServiceConfig(
                    name=str(raw.pop("name")), provider=str(raw.pop("provider")), options=raw
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(
                    f"stored service {name!r} is not readable ({type(exc).__name__})"
                ) from None
            loaded[name] = (
                service,
                str(record.get("origin", "api")),
                float(record.get("created_at", 0)),
            )
        if wrong:
            raise WrongKeyError(
                f"cannot decrypt stored services with this key ({self.key_source}): "
                f"{', '.join(repr(n) for n in sorted(wrong))} "
                f"{'was' if len(wrong) == 1 else 'were'} encrypted with another key. Start with "
                "the key they were written with (MSTREAM_ENC_KEY or the key file), or remove "
                "them from the state store."
            )
        if tampered:
            raise TamperedError(
                f"stored service(s) {', '.join(repr(n) for n in sorted(tampered))} failed "
                "authentication (AES-GCM tag mismatch): the data was modified or corrupted "
                "after it was written; restore it from a backup or remove it."
            )
        with self._lock:
            for service, origin, created in loaded.values():
                self._remember(service, origin, created)
        return len(loaded)

    def _remember(self, service: ServiceConfig, origin: str, created: float) -> None:
        self._services[service.name] = service
        self._origin[service.name] = origin
        self._created[service.name] = created
        _collect_secrets(service.options, secret_fields_of(service.provider), self._secrets)
        self._secret_snapshot = frozenset(self._secrets)

    def _persist(self, service: ServiceConfig, origin: str, created: float) -> None:
        record = {"service": service.to_dict(), "origin": origin, "created_at": created}
        plain = json.dumps(record, default=str).encode("utf-8")
        self.store.put(service.name, self.cipher.encrypt(plain, _context(service.name)))

    def apply_file(self, services: Iterable[ServiceConfig], startup_state: str) -> None:
        """Merge the config file's services into the (loaded) registry.

        ``force_from_file`` and ``seed_from_file``: the file's definition wins for every
        name it defines. ``keep``: stored definitions win; the file only adds missing names.
        Services created through the API are kept in every mode.
        """
        for service in services:
            with self._lock:
                exists = service.name in self._services
                if exists and startup_state == "keep":
                    continue
                if exists and self._services[service.name] == service:
                    self._origin[service.name] = "file"
                    continue
            self.add(service, origin="file", replace=True)

    # -- access --------------------------------------------------------------------------

    def add(self, service: ServiceConfig, *, origin: str = "api", replace: bool = False) -> None:
        """Add (or with ``replace`` overwrite) a service and persist it encrypted.

        Raises:
            ConflictError: a service with that name exists and ``replace`` is false.
        """
        with self._lock:  # reserve the name; the store is written outside the lock
            if service.name in self._pending:
                raise ConflictError(f"service {service.name!r} is being changed; try again")
            if service.name in self._services and not replace:
                raise ConflictError(f"service {service.name!r} already exists")
            created = self._created.get(service.name) or time.time()
            self._pending.add(service.name)
        try:
            self._persist(service, origin, created)
            with self._lock:
                self._remember(service, origin, created)
        finally:
            with self._lock:
                self._pending.discard(service.name)
        log.info("service %s (%s) saved", service.name, service.provider)

    def remove(self, name: str) -> ServiceConfig:
        """Remove a service from the registry and the store.

        Raises:
            NotFoundError: no such service.
        """
        with self._lock:  # reserve the name; the store is written outside the lock
            service = self.get(name)
            if name in self._pending:
                raise ConflictError(f"service {name!r} is being changed; try again")
            self._pending.add(name)
        try:
            self.store.delete(name)
            with self._lock:
                del self._services[name]
                self._origin.pop(name, None)
                self._created.pop(name, None)
        finally:
            with self._lock:
                self._pending.discard(name)
        log.info("service %s removed", name)
        return service

    def get(self, name: str) -> ServiceConfig:
        """The service called ``name`` (secrets included: never log or return it).

        Raises:
            NotFoundError: no such service.
        """
        with self._lock:
            service = self._services.get(name)
        if service is None:
            raise NotFoundError(f"service {name!r} not found")
        return service

    def all(self) -> dict[str, ServiceConfig]:
        """A snapshot of every service by name."""
        with self._lock:
            return dict(self._services)

    def origin(self, name: str) -> str:
        """``file`` (from the config file) or ``api`` (created through the REST API)."""
        with self._lock:
            return self._origin.get(name, "api")

    def masked(self, name: str) -> dict[str, Any]:
        """One service as a masked config entry, plus ``origin``.

        Raises:
            NotFoundError: no such service.
        """
        service = self.get(name)
        return {**mask_service(service), "origin": self.origin(name)}

    def secret_values(self) -> frozenset[str]:
        """Every secret value the registry has seen (an immutable snapshot; no lock)."""
        return self._secret_snapshot


class SecretLogFilter(logging.Filter):
    """A logging filter that masks URL credentials and the registry's secret values, and
    caps each record at :data:`~mstream.masking.MAX_MESSAGE_CHARS` (with a mark).

    It runs on every record from every thread, so it takes no lock: it reads the
    registry's immutable snapshot of secret values, and masking is linear in the text.

    Example:
        >>> svc = ServiceConfig("k", "kafka", {"sasl.password": "pw-123"})
        >>> reg = ServiceRegistry.in_memory([svc])
        >>> record = logging.LogRecord("x", 20, "f", 1, "login with %s failed", ("pw-123",), None)
        >>> SecretLogFilter(reg).filter(record), record.getMessage()
        (True, 'login with **** failed')
    """

    def __init__(self, registry: ServiceRegistry | None = None) -> None:
        super().__init__()
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets masked; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        secrets = self.registry.secret_values() if self.registry is not None else frozenset()
        masked = mask_and_cap(message, secrets)
        if masked != message:
            record.msg = masked
            record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_and_cap(
                logging.Formatter().formatException(record.exc_info), secrets
            )
        return True


__all__ = [
    "MASK",
    "DecryptError",
    "SecretLogFilter",
    "ServiceRegistry",
    "is_secret_key",
    "mask_connection_string",
    "mask_options",
    "mask_service",
    "mask_text",
]
