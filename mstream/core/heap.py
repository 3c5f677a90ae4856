"""The garbage collector and a long-running pipeline process.

A process that moves events holds thousands of them in flight; they survive the young
collections and push the collector into full ones, and a full collection traverses every
object the process made at start-up (modules, classes, configuration: tens of thousands)
although none of them is ever garbage. At Kafka rates that is 15-20% of the engine's time
(see ``bench/README.md``). :func:`freeze_startup_heap` moves what exists once start-up is
done to the collector's permanent generation (:func:`gc.freeze`), so full collections
scan only what the pipelines made since. Reference counting still frees those objects;
only a reference cycle among them would never be collected.

:func:`widen_young_generation` makes the young collections rarer. A pipeline keeps its
in-flight chunks (records, futures, acknowledgements: tens of thousands of objects)
alive across many of them, so each young collection at CPython's default threshold (700
new objects) finds most of what it scans still alive and moves it on to the middle
generation, which is then scanned again: on the Kafka benchmark that was 2,400
collections and 0.3 s in a 6 s run (the plain client loop: 0.17 s). At 10,000 it was
~105 collections and 0.16-0.28 s; at 50,000, which the window's objects rarely reach
between two collections, 2-3 collections and 0.02 s (see ``bench/README.md``). Objects
without a reference cycle are freed by reference counting whatever the threshold, so
what this holds back is at most that many young objects in cycles.
"""

from __future__ import annotations

import gc
import threading

YOUNG_THRESHOLD = 50_000
"""New container objects between two young collections in a pipeline process (CPython: 700)."""

_lock = threading.Lock()
_frozen = False


def freeze_startup_heap() -> bool:
    """Collect once, then freeze every object alive now; only the first call does anything.

    Call it when start-up is done (imports made, configuration loaded), before the
    pipelines run: the ``mstream`` command does.

    Returns:
        Whether this call froze the heap (False: an earlier call did).

    Example (not run by the doctests: it would freeze the test process)::

        >>> freeze_startup_heap()  # doctest: +SKIP
        True
    """
    global _frozen
    with _lock:
        if _frozen:
            return False
        _frozen = True
    gc.collect()
    gc.freeze()
    return True


def widen_young_generation(threshold: int = YOUNG_THRESHOLD) -> None:
    """Collect the young generation every ``threshold`` new objects (the older generations'
    thresholds are kept). The ``mstream`` command calls it at start-up.

    Example (not run by the doctests: it would change the test process)::

        >>> widen_young_generation()  # doctest: +SKIP
        >>> gc.get_threshold()[0]  # doctest: +SKIP
        50000
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)
