"""The event envelope: one record's payload, attributes, metadata and acknowledgement.

An :class:`Event` holds its payload bytes in a named encoding, user-visible
``attributes`` (Pub/Sub attributes, Kafka headers), source ``metadata`` (topic,
partition, offset, key, timestamp, operation type...) and an acknowledgement callback.
Events travel in a :class:`~mstream.core.batch.Batch`, which a source may also fill with
columns instead (:class:`~mstream.core.batch.Records`): events are then made only when a
step asks for them.

Example:
    >>> e = Event(b'{"a": 1}', "json", ack=lambda: None)
    >>> e.doc
    {'a': 1}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mstream.encodings import AvroSchema, decode, encode

Ack = Callable[[], None]


class Event:
    """One event: payload bytes in an encoding, attributes, metadata and an ack.

    The decoded document is cached on first use (:attr:`doc`), so converting one event
    for several sinks decodes it once.

    Args:
        payload: the raw bytes in ``encoding``.
        encoding: ``json``, ``bson`` or ``avro``.
        attributes: string key/values carried to sinks (Pub/Sub attributes, Kafka headers).
        metadata: source facts (``key``, ``topic``, ``partition``, ``offset``,
            ``timestamp``, ``operation_type``, ``database``, ``collection``...).
        schema: the Avro schema in force for this event, if any.
        ack: called once when every sink has finished with the event.
        doc: an already decoded document (skips decoding).
    """

    __slots__ = ("_doc", "ack", "attributes", "encoding", "metadata", "payload", "schema")

    _MISSING: Any = object()

    def __init__(
        self,
        payload: bytes,
        encoding: str,
        *,
        attributes: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        schema: AvroSchema | None = None,
        ack: Ack | None = None,
        doc: Any = _MISSING,
    ) -> None:
        self.payload = payload
        self.encoding = encoding
        self.attributes = attributes if attributes is not None else {}
        self.metadata = metadata if metadata is not None else {}
        self.schema = schema
        self.ack = ack
        self._doc = doc

    @property
    def doc(self) -> Any:
        """The decoded document (decoded once, then cached).

        Raises:
            mstream.errors.DecodeError: the payload is not valid in its encoding.
        """
        if self._doc is Event._MISSING:
            self._doc = decode(self.payload, self.encoding, self.schema)
        return self._doc

    @property
    def decoded(self) -> bool:
        """Whether the document is at hand already (given, or decoded and cached)."""
        return self._doc is not Event._MISSING

    def converted(self, encoding: str, schema: AvroSchema | None = None) -> Event:
        """Return this event in ``encoding`` (itself when nothing changes).

        Avro output is validated against ``schema`` (or the event's own schema). Converting
        to the same encoding returns the event itself, except Avro with a new schema, which
        is decoded and re-encoded so that it is validated.

        Raises:
            mstream.errors.EventError: decoding, validation or encoding failed.
        """
        target_schema = schema if schema is not None else self.schema
        if encoding == self.encoding and (encoding != "avro" or target_schema is self.schema):
            return self
        return self._in_encoding(encode(self.doc, encoding, target_schema), encoding, target_schema)

    def _in_encoding(self, payload: bytes, encoding: str, schema: AvroSchema | None) -> Event:
        """This event with another payload (same document, attributes and metadata)."""
        return Event(
            payload,
            encoding,
            attributes=self.attributes,
            metadata=self.metadata,
            schema=schema,
            doc=self._doc,
        )

    def replace(self, **changes: Any) -> Event:
        """A copy with some fields changed (``payload``, ``encoding``, ``doc``...)."""
        fields: dict[str, Any] = {
            "payload": self.payload,
            "encoding": self.encoding,
            "attributes": self.attributes,
            "metadata": self.metadata,
            "schema": self.schema,
            "ack": None,
            "doc": Event._MISSING if "payload" in changes else self._doc,
        }
        fields.update(changes)
        payload = fields.pop("payload")
        encoding = fields.pop("encoding")
        return Event(payload, encoding, **fields)

    def __repr__(self) -> str:
        preview = self.payload[:60]
        return f"Event({preview!r}{'...' if len(self.payload) > 60 else ''}, {self.encoding!r})"


class LazyEvent(Event):
    """An event whose ``metadata`` and ``attributes`` are built on first use, then kept.

    A source whose facts cost something to turn into dictionaries (decoding a resume
    token, the headers as strings) keeps them in slots of a subclass and builds the
    dictionaries only when something reads them (a dead letter, a script, a Pub/Sub sink);
    once built, changes to them stick. Subclasses call :meth:`_init_lazy` and implement
    :meth:`_build_metadata` and :meth:`_build_attributes`.

    Example:
        >>> class Seq(LazyEvent):
        ...     __slots__ = ("n",)
        ...     def __init__(self, n):
        ...         self._init_lazy(b"{}", "json"); self.n = n
        ...     def _build_metadata(self): return {"seq": self.n}
        ...     def _build_attributes(self): return {"seq": str(self.n)}
        >>> e = Seq(7)
        >>> twin = e.converted("bson")  # converted before anything read its facts
        >>> type(twin).__name__, twin.n, twin.metadata_built, twin.doc
        ('Seq', 7, False, {})
        >>> e.metadata_built, e.metadata, e.metadata_built, e.attributes
        (False, {'seq': 7}, True, {'seq': '7'})
    """

    __slots__ = ()

    _facts: tuple[Any, ...] = ()
    """The slots a subclass adds (its facts), copied into a converted twin."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [k for k in cls.__mro__ if issubclass(k, LazyEvent) and k is not LazyEvent]
        cls._facts = tuple(vars(k)[name] for k in own for name in vars(k).get("__slots__", ()))

    def _in_encoding(self, payload: bytes, encoding: str, schema: AvroSchema | None) -> Event:
        """A twin of the same class, its dictionaries still unbuilt when they are here."""
        if _METADATA.__get__(self) is not None or _ATTRIBUTES.__get__(self) is not None:
            return super()._in_encoding(payload, encoding, schema)
        twin = object.__new__(type(self))
        twin._init_lazy(payload, encoding)
        for fact in self._facts:
            fact.__set__(twin, fact.__get__(self))
        twin.schema = schema
        twin._doc = self._doc
        return twin

    def _init_lazy(self, payload: bytes, encoding: str) -> None:
        """Set the fields of an event that has no schema, ack or document yet."""
        self.payload = payload
        self.encoding = encoding
        _ATTRIBUTES.__set__(self, None)
        _METADATA.__set__(self, None)
        self.schema = None
        self.ack = None
        self._doc = Event._MISSING

    def _build_metadata(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The metadata dictionary (called once, on first use)."""
        raise NotImplementedError

    def _build_attributes(self) -> dict[str, str]:  # pragma: no cover - abstract
        """The attributes dictionary (called once, on first use)."""
        raise NotImplementedError

    @property
    def metadata(self) -> dict[str, Any]:
        """Source facts, built on first use."""
        metadata: dict[str, Any] | None = _METADATA.__get__(self)
        if metadata is None:
            metadata = self._build_metadata()
            _METADATA.__set__(self, metadata)
        return metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        _METADATA.__set__(self, value)

    @property
    def attributes(self) -> dict[str, str]:
        """String key/values carried to sinks, built on first use."""
        attributes: dict[str, str] | None = _ATTRIBUTES.__get__(self)
        if attributes is None:
            attributes = self._build_attributes()
            _ATTRIBUTES.__set__(self, attributes)
        return attributes

    @attributes.setter
    def attributes(self, value: dict[str, str]) -> None:
        _ATTRIBUTES.__set__(self, value)

    @property
    def metadata_built(self) -> bool:
        """Whether ``metadata`` was built (read or set) already."""
        return _METADATA.__get__(self) is not None

    def key_and_headers(self) -> tuple[Any, Any]:
        """``metadata["key"]`` and ``metadata["headers"]`` (what a sink writes as the
        message's key and headers), without building ``metadata`` when the class knows
        them (:meth:`_own_key_and_headers`)."""
        if _METADATA.__get__(self) is None:
            own = self._own_key_and_headers()
            if own is not None:
                return own
        metadata = self.metadata
        return metadata.get("key"), metadata.get("headers")

    def _own_key_and_headers(self) -> tuple[Any, Any] | None:
        """The key and headers the unbuilt ``metadata`` would hold; None: build it to know."""
        return None


_ATTRIBUTES: Any = vars(Event)["attributes"]  # the slots' own descriptors, for LazyEvent
_METADATA: Any = vars(Event)["metadata"]
