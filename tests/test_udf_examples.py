"""Every script in examples/udf runs on its sample events with the expected outputs."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from bson import Decimal128, ObjectId, json_util

from mstream.udf import load_scripts

pytestmark = pytest.mark.udf

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "udf"


def samples(script: str) -> list[tuple[Any, dict[str, str]]]:
    out = []
    for line in (EXAMPLES / "sample-events.jsonl").read_text().splitlines():
        if line.strip():
            event = json_util.loads(line)
            if event["script"] == script:
                out.append((event["data"], event["attributes"]))
    return out


@pytest.fixture(scope="module")
def lib():  # type: ignore[no-untyped-def]
    return load_scripts(EXAMPLES)


def run(lib, script: str) -> list[list[tuple[Any, dict[str, str]]]]:  # type: ignore[no-untyped-def]
    return [lib[script].transform(data, attrs) for data, attrs in samples(script)]


def test_every_example_has_samples(lib) -> None:  # type: ignore[no-untyped-def]
    for name in lib.names:
        assert samples(name), f"{name} has no sample events"


def test_json_transform(lib) -> None:  # type: ignore[no-untyped-def]
    [[(alice, attrs)], [(bob, _)]] = run(lib, "json_transform.lua")
    assert alice["_id"] == ObjectId("65a1b2c3d4e5f60718293a4b")
    assert alice["full_name"] == "Alice Smith"
    assert alice["email"] == "alice.smith@example.com"
    assert alice["tier"] == "gold" and alice["discount_percentage"] == 15
    assert alice["free_shipping"] is True and alice["priority_support"] is True
    assert "password" not in alice and "ssn" not in alice
    assert attrs == {"source": "users", "processor": "json_transform", "loyalty_tier": "gold"}
    assert bob["tier"] == "member" and bob["free_shipping"] is False


def test_attribute_enrichment(lib) -> None:  # type: ignore[no-untyped-def]
    [[(data, attrs)], [(empty, empty_attrs)]] = run(lib, "attribute_enrichment.lua")
    assert data == samples("attribute_enrichment.lua")[0][0]
    assert attrs == {
        "source": "users",
        "field_count": "6",
        "data_type": "object",
        "quality": "standard",
    }
    assert empty == {} and empty_attrs["quality"] == "empty"


def test_data_filter_filters(lib) -> None:  # type: ignore[no-untyped-def]
    kept, inactive, no_price = run(lib, "data_filter.lua")
    assert inactive == [] and no_price == []
    [(laptop, attrs)] = kept
    assert laptop["price_tier"] == "luxury"
    assert laptop["department"] == "technology" and laptop["category"] == "COMPUTERS"
    assert laptop["discounted_price"] == pytest.approx(899.1)
    assert laptop["stock_level"] == "low" and laptop["in_stock"] is True
    assert "active" not in laptop
    assert attrs == {"price_tier": "luxury", "department": "technology"}


def test_mask_pii_masks(lib) -> None:  # type: ignore[no-untyped-def]
    [[(first, attrs)], [(second, _)]] = run(lib, "mask_pii.lua")
    assert first == {
        "user_id": hashlib.sha256(b"42").hexdigest(),
        "email": "a***@example.com",
        "phone": "+* ***-***-4567",
        "birth_date": "1990-01-01",
    }
    assert attrs == {"pii": "masked"}
    assert second["user_id"] == hashlib.sha256(b"u-7").hexdigest()
    assert second["email"] == "*@x.org"
    assert second["phone"] == "1234"
    assert second["birth_date"] == dt.datetime(1985, 1, 1)


def test_strip_id_removes_id(lib) -> None:  # type: ignore[no-untyped-def]
    [[(doc, attrs)]] = run(lib, "strip_id.lua")
    assert "_id" not in doc
    assert doc["source_id"] == ObjectId("65a1b2c3d4e5f60718293a4b")
    assert doc["total"] == Decimal128("19.99")
    assert isinstance(doc["captured_at"], dt.datetime)
    assert attrs == {"source_id": "65a1b2c3d4e5f60718293a4b"}


def test_split_items_fans_out(lib) -> None:  # type: ignore[no-untyped-def]
    [events] = run(lib, "split_items.lua")
    assert events == [
        ({"line": 1, "order_id": 1001, "qty": 1, "sku": "A"}, {"line": "1", "order_id": "1001"}),
        ({"line": 2, "order_id": 1001, "qty": 3, "sku": "B"}, {"line": "2", "order_id": "1001"}),
    ]
    assert lib["split_items.lua"].transform({"order_id": 1, "items": []}, {}) == []
