"""The encrypted service registry: no secret at rest, tampering and wrong keys detected,
masking of responses and log lines, and the key file."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from mstream.config import ServiceConfig, parse_config
from mstream.crypto import (
    Cipher,
    DecryptError,
    TamperedError,
    WrongKeyError,
    create_key_file,
    load_key,
)
from mstream.errors import ConfigError, ConflictError, NotFoundError
from mstream.registry import (
    SecretLogFilter,
    ServiceRegistry,
    mask_connection_string,
    mask_options,
    mask_service,
    mask_text,
)
from mstream.service import open_registry
from mstream.stores import MemoryServiceStore, Stores

pytestmark = pytest.mark.api

SECRETS = ("hunter2-mongo", "kafka-pw-77", "tok-abc-123")


def secret_services() -> list[ServiceConfig]:
    return [
        ServiceConfig(
            "mongo",
            "mongodb",
            {
                "connection_string": "mongodb://app:hunter2-mongo@db1:27017/?authSource=admin",
                "db_name": "x",
            },
        ),
        ServiceConfig(
            "kafka",
            "kafka",
            {"bootstrap.servers": "k:9092", "sasl.username": "bob", "sasl.password": "kafka-pw-77"},
        ),
        ServiceConfig("hook", "http", {"host": "https://h.example", "auth_token": "tok-abc-123"}),
    ]


def test_stored_bytes_hold_no_secret(tmp_path: Path) -> None:
    stores = Stores.embedded(tmp_path)
    registry = ServiceRegistry(stores.services, Cipher(bytes(range(32))))
    for service in secret_services():
        registry.add(service)
    stores.close()
    raw = (tmp_path / "mstream.db").read_bytes()
    for extra in tmp_path.glob("mstream.db*"):  # WAL files too
        raw += extra.read_bytes()
    for secret in SECRETS:
        assert secret.encode() not in raw
    assert b"bob" not in raw and b"k:9092" not in raw  # the whole definition is encrypted

    again = Stores.embedded(tmp_path)
    reloaded = ServiceRegistry(again.services, Cipher(bytes(range(32))))
    assert reloaded.load() == 3
    assert reloaded.get("kafka").options["sasl.password"] == "kafka-pw-77"
    assert reloaded.origin("kafka") == "api"
    again.close()


def test_tampering_is_detected(tmp_path: Path) -> None:
    stores = Stores.embedded(tmp_path)
    registry = ServiceRegistry(stores.services, Cipher(bytes(32)))
    registry.add(secret_services()[0])
    registry.add(ServiceConfig("other", "stdout"))
    stores.close()

    db = sqlite3.connect(tmp_path / "mstream.db")
    (blob,) = db.execute("SELECT blob FROM services WHERE name = 'mongo'").fetchone()
    flipped = bytearray(blob)
    flipped[-5] ^= 0x01
    db.execute("UPDATE services SET blob = ? WHERE name = 'mongo'", (bytes(flipped),))
    db.commit()
    db.close()

    again = Stores.embedded(tmp_path)
    with pytest.raises(TamperedError, match=r"'mongo' failed authentication .*modified"):
        ServiceRegistry(again.services, Cipher(bytes(32))).load()
    again.close()


def test_blob_is_bound_to_its_name() -> None:
    store = MemoryServiceStore()
    cipher = Cipher(bytes(32))
    registry = ServiceRegistry(store, cipher)
    registry.add(secret_services()[1])
    store.put("evil", store.get("kafka") or b"")  # copy the blob under another name
    with pytest.raises(TamperedError, match="'evil'"):
        ServiceRegistry(store, cipher).load()


def test_truncated_blob_is_detected() -> None:
    store = MemoryServiceStore()
    store.put("short", b"MSE1xx")
    with pytest.raises(TamperedError):
        ServiceRegistry(store, Cipher(bytes(32))).load()


def test_wrong_key_gives_a_clear_error(tmp_path: Path) -> None:
    config = parse_config(
        {
            "services": [{"name": "files", "provider": "file", "base_dir": str(tmp_path)}],
            "system": {
                "data_dir": str(tmp_path / "data"),
                "encryption_key_path": str(tmp_path / "k"),
            },
        },
        "t.toml",
        {},
    )
    stores = Stores.embedded(tmp_path / "data")
    open_registry(config, stores, {"MSTREAM_ENC_KEY": "ab" * 32})
    stores.close()

    stores = Stores.embedded(tmp_path / "data")
    with pytest.raises(WrongKeyError) as caught:
        open_registry(config, stores, {"MSTREAM_ENC_KEY": "cd" * 32})
    message = str(caught.value)
    assert message.startswith("cannot decrypt stored services with this key (MSTREAM_ENC_KEY)")
    assert "'files'" in message and "cdcd" not in message
    assert isinstance(caught.value, DecryptError)
    # the right key still works
    registry = open_registry(config, stores, {"MSTREAM_ENC_KEY": "AB" * 32})
    assert set(registry.all()) == {"files"}
    stores.close()


def test_malformed_env_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="MSTREAM_ENC_KEY: expected 64 hex characters"):
        load_key("/nonexistent", {"MSTREAM_ENC_KEY": "not-hex"})
    with pytest.raises(ConfigError):
        load_key("/nonexistent", {"MSTREAM_ENC_KEY": "ab" * 31})


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "mstream.key"
    old = os.umask(0)  # even with a permissive umask the file is private
    try:
        key = load_key(path, {})
    finally:
        os.umask(old)
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path, {}) == key
    assert create_key_file(path) == key  # never overwritten
    # a hex key file works too; the env var wins over the file
    hex_file = tmp_path / "hex.key"
    hex_file.write_text("0f" * 32 + "\n")
    assert load_key(hex_file, {}) == bytes([0x0F]) * 32
    assert load_key(hex_file, {"MSTREAM_ENC_KEY": "01" * 32}) == bytes([1]) * 32
    assert load_key("/nonexistent", {"MSTREAM_KEY_FILE": str(hex_file)}) == bytes([0x0F]) * 32
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"\xff" * 7)
    with pytest.raises(ConfigError, match="expected 32 bytes or 64 hex characters"):
        load_key(bad, {})


def test_masking_connection_strings() -> None:
    cases = {
        "mongodb://user:pass@host": "mongodb://user:****@host",
        "mongodb://user:pass@h1:27017,h2:27017/db?replicaSet=rs0": "mongodb://user:****@h1:27017,h2:27017/db?replicaSet=rs0",
        "mongodb+srv://u:p%40ss@cluster.example.net/": "mongodb+srv://u:****@cluster.example.net/",
        "mongodb://u:p@ss@host/db": "mongodb://u:****@host/db",  # unencoded @ in the password
        "mongodb://admin@host/db": "mongodb://admin@host/db",  # no password
        "mongodb://host/db?tlsCertificateKeyFilePassword=xyz&w=1": "mongodb://host/db?tlsCertificateKeyFilePassword=****&w=1",
        "https://api.example/x?access_token=abc": "https://api.example/x?access_token=****",
        "localhost:9092": "localhost:9092",
    }
    for raw, masked in cases.items():
        assert mask_connection_string(raw) == masked


def test_masking_secret_fields() -> None:
    masked = [mask_service(s) for s in secret_services()]
    text = repr(masked)
    for secret in SECRETS:
        assert secret not in text
    assert masked[0]["connection_string"] == "mongodb://app:****@db1:27017/?authSource=admin"
    assert masked[1]["sasl.password"] == "****" and masked[1]["sasl.username"] == "bob"
    assert masked[2]["auth_token"] == "****" and masked[2]["host"] == "https://h.example"
    nested = mask_options(
        {
            "auth": {"kind": "service_account", "account_key_path": "/keys/sa.json"},
            "ssl.key.password": "x1",
            "client_secret": "x2",
            "list": ["mongodb://a:b@c"],
            "empty_password": "",
            "count": 3,
        },
        ["count"],
    )
    assert nested == {
        "auth": {"kind": "service_account", "account_key_path": "****"},
        "ssl.key.password": "****",
        "client_secret": "****",
        "list": ["mongodb://a:****@c"],
        "empty_password": "",
        "count": "****",
    }


def test_registry_masked_view_and_crud() -> None:
    registry = ServiceRegistry.in_memory()
    service = secret_services()[0]
    registry.add(service)
    with pytest.raises(ConflictError):
        registry.add(service)
    view = registry.masked("mongo")
    assert view["origin"] == "api" and "hunter2" not in repr(view)
    registry.remove("mongo")
    with pytest.raises(NotFoundError):
        registry.masked("mongo")


def test_file_services_follow_startup_state() -> None:
    registry = ServiceRegistry.in_memory()
    registry.add(ServiceConfig("g", "generator", {"count": 1}))
    registry.add(ServiceConfig("api-only", "stdout"))
    registry.apply_file([ServiceConfig("g", "generator", {"count": 2})], "keep")
    assert registry.get("g").options == {"count": 1}
    registry.apply_file([ServiceConfig("g", "generator", {"count": 2})], "seed_from_file")
    assert registry.get("g").options == {"count": 2} and registry.origin("g") == "file"
    assert "api-only" in registry.all()


def test_log_lines_are_masked() -> None:
    registry = ServiceRegistry.in_memory(secret_services())
    logger = logging.getLogger("mstream.test.masking")
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    handler.addFilter(SecretLogFilter(registry))
    logger.addHandler(handler)
    try:
        logger.warning("connect to %s failed", "mongodb://app:hunter2-mongo@db1:27017")
        logger.warning("kafka login kafka-pw-77 refused")
        try:
            raise RuntimeError("token tok-abc-123 rejected")
        except RuntimeError:
            logger.exception("call failed")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    for secret in SECRETS:
        assert secret not in text
    assert "mongodb://app:****@db1:27017" in text
    assert mask_text("no secrets here") == "no secrets here"


def test_every_value_inside_a_secret_table_is_a_secret() -> None:
    from mstream.config import parse_config
    from mstream.registry import ServiceRegistry

    config = parse_config(
        {
            "services": [
                {
                    "name": "hook",
                    "provider": "http",
                    "host": "http://127.0.0.1:9",
                    "headers": {"Authorization": "Bearer header-secret", "X-Key": "k-123456"},
                }
            ]
        }
    )
    secrets = ServiceRegistry.in_memory(config.services).secret_values()
    assert {"Bearer header-secret", "k-123456"} <= secrets
