"""Build an Rx operator from a plain function applied to each item."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc

_T = TypeVar("_T")
_R = TypeVar("_R")


def map_each(fn: Callable[[_T], _R]) -> Callable[[Observable[_T]], Observable[_R]]:
    """Like ``reactivex.operators.map``, lean: one closure, errors go to ``on_error``."""

    def operator(source: Observable[_T]) -> Observable[_R]:
        def subscribe(
            observer: abc.ObserverBase[_R], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            on_next_down = observer.on_next

            def on_next(value: _T) -> None:
                try:
                    result = fn(value)
                except Exception as exc:
                    observer.on_error(exc)
                else:
                    on_next_down(result)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator


def pipe_all(
    *ops: Callable[[Observable[Any]], Observable[Any]],
) -> Callable[[Observable[Any]], Observable[Any]]:
    """Compose operators left to right (``source.pipe(*ops)`` as one operator)."""

    def operator(source: Observable[Any]) -> Observable[Any]:
        return source.pipe(*ops)

    return operator
