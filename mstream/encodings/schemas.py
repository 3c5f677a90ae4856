"""Which Avro schema applies to each step of a connector (schema inheritance).

Rules (SPEC section 3): the first step (the source) may set ``schema_id``; a step without
one inherits the schema of the step before it; a step with one uses it, and so do the later
steps until another one overrides it.

Example:
    >>> resolve_step_schemas(["users", None, "users-v2", None])
    ['users', 'users', 'users-v2', 'users-v2']
"""

from __future__ import annotations

__all__ = ["resolve_step_schemas"]


def resolve_step_schemas(step_schema_ids: list[str | None]) -> list[str | None]:
    """Resolve the effective schema id of every step.

    Args:
        step_schema_ids: the ``schema_id`` written on each step, in pipeline order (source
            first, then middlewares, then sinks), ``None`` where a step sets none.

    Returns:
        One effective schema id per step (``None`` while no step has set one yet).

    Example:
        >>> resolve_step_schemas([None, None])
        [None, None]
        >>> resolve_step_schemas([None, "orders", None])
        [None, 'orders', 'orders']
        >>> resolve_step_schemas([])
        []
    """
    resolved: list[str | None] = []
    current: str | None = None
    for schema_id in step_schema_ids:
        if schema_id is not None:
            current = schema_id
        resolved.append(current)
    return resolved
