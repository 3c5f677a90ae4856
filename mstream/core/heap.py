"""The garbage collector and a long-running pipeline process.

A process that moves events holds thousands of them in flight; they survive the young
collections and push the collector into full ones, and a full collection traverses every
object the process made at start-up (modules, classes, configuration: tens of thousands)
although none of them is ever garbage. At Kafka rates that is 15-20% of the engine's time
(see ``bench/README.md``). :func:`freeze_startup_heap` moves what exists once start-up is
done to the collector's permanent generation (:func:`gc.freeze`), so full collections
scan only what the pipelines made since. Reference counting still frees those objects;
only a reference cycle among them would never be collected.
"""

from __future__ import annotations

import gc
import threading

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
