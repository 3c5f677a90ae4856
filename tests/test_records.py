"""A Kafka poll as a batch of records: conversions and checks on the columns, events on demand."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from mstream.operators import convert_batch

from mstream.config import ServiceConfig, StepConfig
from mstream.core import Batch
from mstream.encodings import AvroSchema, decode
from mstream.providers.base import StepContext
from mstream.providers.kafka.kafka_python import KafkaPythonRecords
from mstream.providers.kafka.sink import KafkaSinkBase

Record = namedtuple("Record", "topic partition offset timestamp key value headers")

SCHEMA = AvroSchema.parse(
    {"type": "record", "name": "U", "fields": [{"name": "age", "type": "int"}]}, name="u"
)


def _batch(values: list[bytes]) -> tuple[Batch, list[int]]:
    acked: list[int] = []
    records = [
        Record("in", 0, i, 1_700_000_000_000 + i, b"k%d" % i, v, [("h", b"%d" % i)])
        for i, v in enumerate(values)
    ]
    acks: list[Any] = [lambda i=i: acked.append(i) for i in range(len(values))]
    return Batch.of_records(KafkaPythonRecords(records, "json"), acks), acked


def _rejecting() -> tuple[list[tuple[bytes, str, str]], Any]:
    rejected: list[tuple[bytes, str, str]] = []
    return rejected, lambda e, reason, stage: rejected.append((e.payload, reason, stage))


def test_json_to_avro_on_the_columns_keeps_keys_headers_and_acks() -> None:
    batch, acked = _batch([b'{"age": 1}', b'{"age": 2, "x": 0}'])
    rejected, reject = _rejecting()
    out = convert_batch(batch, "avro", SCHEMA, reject)
    assert out.records is not None and batch.records is not None  # no event made
    assert [decode(p, "avro", SCHEMA) for p in out.payloads()] == [{"age": 1}, {"age": 2}]
    sink = KafkaSinkBase(
        ServiceConfig("k", "kafka", {"bootstrap.servers": "h:1"}),
        StepConfig("k", "out", output_encoding="avro"),
        StepContext("c", "sink"),
    )
    messages = sink.messages(out)
    assert [(key, headers) for _, key, headers in messages] == [
        (b"k0", [("h", b"0")]),
        (b"k1", [("h", b"1")]),
    ]
    events = out.events  # made on demand: Avro, with the schema, the record's facts
    assert [e.doc for e in events] == [{"age": 1}, {"age": 2}]
    assert events[1].metadata["offset"] == 1 and events[1].attributes == {"h": "1"}
    out.ack_all()
    assert acked == [0, 1] and rejected == []


def test_a_bad_event_in_the_chunk_is_dead_lettered_alone_with_its_reason() -> None:
    batch, _ = _batch([b'{"age": 1}', b'{"age": "old"}', b"{", b'{"age": 3}'])
    rejected, reject = _rejecting()
    out = convert_batch(batch, "avro", SCHEMA, reject)
    assert [decode(p, "avro", SCHEMA) for p in out.payloads()] == [{"age": 1}, {"age": 3}]
    assert [(payload, stage) for payload, _, stage in rejected] == [
        (b'{"age": "old"}', "validate"),
        (b"{", "decode"),
    ]
    assert "field 'age'" in rejected[0][1]
    assert len(out.acks) == 4  # every source record is still acknowledged with the batch


def test_the_source_check_reads_the_payloads_and_makes_events_only_for_a_bad_chunk() -> None:
    good, _ = _batch([b'{"age": 1}', b"[2]"])
    rejected, reject = _rejecting()
    assert convert_batch(good, "json", None, reject, verify=True) is good
    assert good.records is not None
    bad, _ = _batch([b'{"age": 1}', b'{"age": 1'])
    out = convert_batch(bad, "json", None, reject, verify=True)
    assert [e.payload for e in out.events] == [b'{"age": 1}']
    assert [(payload, stage) for payload, _, stage in rejected] == [(b'{"age": 1', "decode")]
