"""State stores: checkpoints, jobs, services and dead letters (memory, SQLite, MongoDB).

:meth:`Stores.from_config` picks each store from ``[system]``: a MongoDB collection when
``[system.checkpoints]`` / ``[system.job_lifecycle]`` / ``[system.service_lifecycle]``
names one, the embedded SQLite file under the data directory otherwise (mixing is fine).
Dead letters are kept in the embedded file when any store uses it, else in MongoDB next to
the checkpoints (``<collection>_dead_letters``); the playground's workspaces and test suites
in the collections ``[system.workspaces]`` / ``[system.test_suites]`` name, else in the
embedded file (in memory when every store is in MongoDB).

Example:
    >>> stores = Stores.in_memory()
    >>> stores.checkpoints.save("j", 1); stores.checkpoints.latest("j").position
    1
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mstream.errors import ConfigError, StoreError
from mstream.stores.base import Checkpoint, CheckpointStore, JobStore, ServiceStore
from mstream.stores.dead_letters import (
    DeadLetterStore,
    MemoryDeadLetterStore,
    SqliteDeadLetterStore,
)
from mstream.stores.documents import (
    DocumentStore,
    MemoryDocumentStore,
    RoutedDocumentStore,
    SqliteDocumentStore,
)
from mstream.stores.memory import MemoryCheckpointStore, MemoryJobStore, MemoryServiceStore
from mstream.stores.sqlite import (
    SqliteCheckpointStore,
    SqliteDatabase,
    SqliteJobStore,
    SqliteServiceStore,
)

if TYPE_CHECKING:
    from mstream.config.model import Config, StoreRef
    from mstream.stores.mongodb import MongoConnection

log = logging.getLogger("mstream.stores")


@dataclass
class Stores:
    """The stores a process uses."""

    checkpoints: CheckpointStore
    jobs: JobStore
    services: ServiceStore
    dead_letters: DeadLetterStore = field(default_factory=MemoryDeadLetterStore)
    documents: DocumentStore = field(default_factory=MemoryDocumentStore)

    @classmethod
    def in_memory(cls) -> Stores:
        """Stores that live as long as the process."""
        return cls(MemoryCheckpointStore(), MemoryJobStore(), MemoryServiceStore())

    @classmethod
    def embedded(cls, data_dir: str | Path) -> Stores:
        """Stores in ``data_dir/mstream.db`` (SQLite), kept across restarts."""
        db = SqliteDatabase(Path(data_dir) / "mstream.db")
        return cls(
            SqliteCheckpointStore(db),
            SqliteJobStore(db),
            SqliteServiceStore(db),
            SqliteDeadLetterStore(db),
            SqliteDocumentStore(db),
        )

    @classmethod
    def from_config(cls, config: Config, data_dir: str | Path) -> Stores:
        """The stores ``[system]`` asks for (:meth:`_base_from_config`), with the playground's
        workspaces and test suites in the MongoDB collections ``[system.workspaces]`` and
        ``[system.test_suites]`` name, as in the original, when set.

        Raises:
            ConfigError: a ref names no ``mongodb`` service.
            StoreError: a server cannot be reached, or the SQLite file cannot be opened.
        """
        stores = cls._base_from_config(config, data_dir)
        kinds = {"workspaces": config.system.workspaces, "test-suites": config.system.test_suites}
        routes: dict[str, Any] = {}
        try:
            for kind, ref in kinds.items():
                if ref is None:
                    continue
                from mstream.stores.mongodb import MongoDocumentStore

                label = f"system.{kind.replace('-', '_')}"
                connection = _connect(config, ref, label)
                connection.ping(label)
                routes[kind] = MongoDocumentStore(connection, ref.resource, label)
                log.info(
                    "state store %s: MongoDB service %r, collection %r",
                    label,
                    ref.service_name,
                    ref.resource,
                )
        except BaseException:
            for route in routes.values():
                route.close()
            stores.close()
            raise
        if routes:
            stores.documents = RoutedDocumentStore(routes, stores.documents)
        return stores

    @classmethod
    def _base_from_config(cls, config: Config, data_dir: str | Path) -> Stores:
        """The stores ``[system]`` asks for: MongoDB where a ref is set, SQLite otherwise.

        Each ``mongodb`` service gets one client, shared by the stores that name it, and is
        pinged before anything else so an unreachable server stops start-up with a clear
        message. The SQLite file ``data_dir/mstream.db`` is only opened when some store
        uses it.

        Args:
            config: the configuration (its ``[system]`` refs and ``[[services]]``).
            data_dir: where the embedded SQLite file lives.

        Raises:
            ConfigError: a ref names no ``mongodb`` service, or the service lacks
                ``connection_string`` / ``db_name``.
            StoreError: a server cannot be reached (the message names the store, e.g.
                ``system.checkpoints``, and the host with its password masked), or the
                SQLite file cannot be opened.
        """
        system = config.system
        refs: dict[str, StoreRef | None] = {
            "checkpoints": system.checkpoints,
            "job_lifecycle": system.job_lifecycle,
            "service_lifecycle": system.service_lifecycle,
        }
        if all(ref is None for ref in refs.values()):
            return cls.embedded(data_dir)

        from mstream.stores.mongodb import (
            MongoCheckpointStore,
            MongoJobStore,
            MongoServiceStore,
        )

        connections: dict[str, MongoConnection] = {}
        users: dict[str, list[str]] = {}
        built: list[CheckpointStore | JobStore | ServiceStore] = []
        sqlite: SqliteDatabase | None = None
        try:
            for key, ref in refs.items():
                if ref is None:
                    continue
                label = f"system.{key}"
                if ref.service_name not in connections:
                    connections[ref.service_name] = _connect(config, ref, label)
                users.setdefault(ref.service_name, []).append(label)
            for name, connection in connections.items():
                connection.ping(", ".join(users[name]))

            def embedded_db() -> SqliteDatabase:
                nonlocal sqlite
                if sqlite is None:
                    sqlite = SqliteDatabase(Path(data_dir) / "mstream.db")
                return sqlite

            kinds: dict[str, tuple[Any, Any]] = {
                "checkpoints": (MongoCheckpointStore, SqliteCheckpointStore),
                "job_lifecycle": (MongoJobStore, SqliteJobStore),
                "service_lifecycle": (MongoServiceStore, SqliteServiceStore),
            }
            for key, (in_mongodb, embedded) in kinds.items():
                ref = refs[key]
                if ref is not None:
                    built.append(
                        in_mongodb(connections[ref.service_name], ref.resource, f"system.{key}")
                    )
                else:
                    built.append(embedded(embedded_db()))
        except BaseException:
            for store in built:
                store.close()
            for connection in connections.values():
                connection.close()
            if sqlite is not None:
                sqlite.close()
            raise
        for key, ref in refs.items():
            where = (
                f"MongoDB service {ref.service_name!r}, collection {ref.resource!r}"
                if ref is not None
                else f"{Path(data_dir) / 'mstream.db'} (embedded)"
            )
            log.info("state store system.%s: %s", key, where)
        checkpoints, jobs, services = built
        dead_letters: DeadLetterStore
        documents: DocumentStore
        if sqlite is not None:
            dead_letters, documents = SqliteDeadLetterStore(sqlite), SqliteDocumentStore(sqlite)
        else:
            from mstream.stores.mongodb import MongoDeadLetterStore

            checkpoints_ref = refs["checkpoints"]
            assert checkpoints_ref is not None  # every store is in MongoDB here
            dead_letters = MongoDeadLetterStore(
                connections[checkpoints_ref.service_name],
                f"{checkpoints_ref.resource}_dead_letters",
            )
            documents = MemoryDocumentStore()
            log.info(
                "dead letters kept in MongoDB next to the checkpoints (%s_dead_letters); test "
                "suites and workspaces in [system.workspaces] / [system.test_suites], else in "
                "memory",
                checkpoints_ref.resource,
            )
        return cls(
            cast(CheckpointStore, checkpoints),
            cast(JobStore, jobs),
            cast(ServiceStore, services),
            dead_letters,
            documents,
        )

    def close(self) -> None:
        """Close every store (and the MongoDB clients and SQLite file behind them)."""
        for store in (
            self.checkpoints,
            self.jobs,
            self.services,
            self.dead_letters,
            self.documents,
        ):
            store.close()
        for store in (self.checkpoints, self.jobs, self.services):
            db = getattr(store, "db", None)
            if isinstance(db, SqliteDatabase):
                db.close()
                break


def _connect(config: Config, ref: StoreRef, label: str) -> MongoConnection:
    """A connection for the ``mongodb`` service ``ref`` names.

    Raises:
        ConfigError: no such ``mongodb`` service, or it lacks its options.
        StoreError: the connection string is invalid.
    """
    from mstream.stores.mongodb import MongoConnection

    service = config.service(ref.service_name)
    if service is None or service.provider != "mongodb":
        raise ConfigError(f"{label}.service_name: no mongodb service named {ref.service_name!r}")
    problems = [
        f"{label}: service {ref.service_name!r} needs {option!r} (a non-empty string)"
        for option in ("connection_string", "db_name")
        if not isinstance(service.options.get(option), str) or not service.options[option]
    ]
    if problems:
        raise ConfigError(problems)
    try:
        return MongoConnection(
            service.options["connection_string"],
            service.options["db_name"],
            service_name=service.name,
        )
    except StoreError as exc:
        raise StoreError(f"{label}: {exc}") from None


__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "DeadLetterStore",
    "JobStore",
    "MemoryCheckpointStore",
    "MemoryDeadLetterStore",
    "MemoryJobStore",
    "MemoryServiceStore",
    "ServiceStore",
    "SqliteCheckpointStore",
    "SqliteDatabase",
    "SqliteDeadLetterStore",
    "SqliteJobStore",
    "SqliteServiceStore",
    "Stores",
]
