"""Schema tools of the workbench: synthetic events from a schema, and conversion between
JSON Schema and Avro (``POST /schema/fill``, ``POST /schema/convert``)."""

from mstream.schema_tools.convert import avro_to_json_schema, json_schema_to_avro
from mstream.schema_tools.fill import fill

__all__ = ["avro_to_json_schema", "fill", "json_schema_to_avro"]
