"""The part of a job's pipeline after the source: conversions, middlewares and sinks, built
from a given step onwards (all of it for a run; the tail a dead letter resumes from for a
replay, :mod:`mstream.runtime.replay`).

Steps are named as kept dead letters name them: ``source`` (the conversion right after the
source), ``middlewares[i]``, ``middlewares[i].output`` (the conversion after it) and
``sinks[i]`` (that sink only).

Example:
    >>> resume_plan("middlewares[1].output", middlewares=2, sinks=2)
    (1, [0, 1])
    >>> resume_plan("sinks[1]", middlewares=2, sinks=2)
    (None, [1])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mstream import operators as ops
from mstream.config.model import StepConfig
from mstream.core import ConnectorCounters
from mstream.encodings import StepSchema
from mstream.errors import ConfigError
from mstream.providers import get_provider
from mstream.providers.base import Middleware, Sink

if TYPE_CHECKING:
    from mstream.runtime.connector import Connector
    from mstream.runtime.dead_letter import DeadLetterRouter


def schema_for(
    step: StepConfig, inherited: StepSchema | None, schemas: Mapping[str, StepSchema]
) -> StepSchema | None:
    """The step's own schema, or the one it inherits from the step before."""
    return schemas[step.schema_id] if step.schema_id else inherited


def resume_plan(step: str, middlewares: int, sinks: int) -> tuple[int | None, list[int]]:
    """The first middleware to run (``None``: none) and the sinks a step resumes into.

    Raises:
        ConfigError: the step does not exist in the job (any more).
    """
    every = list(range(sinks))
    if step == "source":
        return 0, every
    for i in range(middlewares):
        if step in (f"middlewares[{i}]", f"middlewares[{i}].output"):
            return i, every
    for i in range(sinks):
        if step == f"sinks[{i}]":
            return None, [i]
    raise ConfigError(f"step: the job has no step {step!r} (its definition changed?)")


def build_steps(
    connector: Connector,
    schemas: Mapping[str, StepSchema],
    reject: DeadLetterRouter,
    opened: list[Sink | Middleware],
    counters: ConnectorCounters,
    *,
    resume: str = "source",
    verify: bool = False,
) -> tuple[list[Any], list[ops.SinkTarget]]:
    """The operators from ``resume`` to the sinks (without ``deliver``) and the sink targets.

    Every step it opens is appended to ``opened`` (close them last-in first-out).

    Raises:
        ConfigError: a provider cannot play its role, or ``resume`` is not a step of the job.
    """
    cfg = connector.config
    first_middleware, sinks = resume_plan(resume, len(cfg.middlewares), len(cfg.sinks))
    current = schema_for(cfg.source, None, schemas)
    pipeline: list[Any] = []
    if resume == "source":
        pipeline.append(
            ops.convert(
                cfg.source.output_encoding,
                reject.at("source"),
                schema=current,
                input_schema=current,
                verify=verify,
            )
        )
    for i, step in enumerate(cfg.middlewares):
        input_schema = current
        current = schema_for(step, current, schemas)
        if first_middleware is None or i < first_middleware:
            continue
        if resume != f"middlewares[{i}].output":
            service = connector._service(step.service_name)
            factory = get_provider(service.provider).middleware
            if factory is None:
                raise ConfigError(f"provider {service.provider!r} cannot be a middleware")
            middleware = factory(service, step, connector._context("middleware", i))
            middleware.open()
            opened.append(middleware)
            pipeline.append(
                ops.middleware(
                    middleware,
                    reject.at(f"middlewares[{i}]"),
                    input_encoding=step.input_encoding,
                    input_schema=input_schema,
                    counters=counters,
                )
            )
        pipeline.append(
            ops.convert(
                step.output_encoding,
                reject.at(f"middlewares[{i}].output"),
                schema=current,
                input_schema=current,
            )
        )
    targets = []
    for i in sinks:
        step = cfg.sinks[i]
        sink = connector._make_sink(step, connector._context("sink", i))
        sink.open()
        opened.append(sink)
        targets.append(
            ops.SinkTarget(
                sink,
                step.output_encoding,
                schema_for(step, current, schemas),
                step.service_name,
                position=i,
            )
        )
    return pipeline, targets
