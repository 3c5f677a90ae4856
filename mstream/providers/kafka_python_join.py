"""A corrected group-join loop for kafka-python 3.0's consumer coordinator.

kafka-python 3.0 runs the JoinGroup/SyncGroup round trip as a task on its IO thread and
``join_group_async`` (called from every ``poll``) awaits it for at most the poll's
timeout, leaving the task in flight for the next poll. Its loop guard is
``while self.need_rejoin()``, and for a *leader* that guard can turn false while the
task is still in flight: the leader's assignment step sets ``_assignment_snapshot``
before its SyncGroup is answered (and the consumer's ``poll`` calls the join loop only
while ``need_rejoin()`` is true). A poll that arrives in that window skips the task, so
the member never records the join: its state never becomes
stable, its heartbeats stay disabled, its assignment is never applied, and the broker
drops it after ``session.timeout.ms``. It happens when a leader rejoins because topic
metadata changed (every group whose leader joined before the topic's partitions were in
its metadata, or after partitions were added) and a poll lands in the few milliseconds
between the JoinGroup and SyncGroup answers — about one rebalance in ten on a loaded
machine with 100 ms polls. kafka-python 2.x checked the pending join (its PR #1695); the
3.0 rewrite lost that check, and 3.0.12 is the newest release.

:func:`install` changes one consumer's coordinator (not the class):

* ``need_rejoin()`` is also true while a join task exists, so ``poll`` keeps entering
  the join loop until the task is awaited;
* the join loop (the library's, with two changes) runs while a join task exists, and
  consumes a finished task's result instead of replacing it with a new JoinGroup.

Example:
    >>> from kafka import KafkaConsumer
    >>> consumer = KafkaConsumer(group_id="g", bootstrap_servers="127.0.0.1:1",
    ...                          api_version=(3, 0))
    >>> install(consumer)
    True
    >>> consumer.close()
"""

from __future__ import annotations

import types
from typing import Any

__all__ = ["install", "join_group_async"]


def install(consumer: Any) -> bool:
    """Give ``consumer``'s group coordinator the corrected join loop.

    Args:
        consumer: A ``kafka.KafkaConsumer``.

    Returns:
        True when the coordinator has the kafka-python 3.0 join task this fix is for
        (and now runs the corrected join), False when it does not (left unchanged).
    """
    coordinator = getattr(consumer, "_coordinator", None)
    needed = ("_join_task", "_do_join_and_sync_async", "_on_join_complete_async", "_manager")
    if coordinator is None or not all(hasattr(coordinator, name) for name in needed):
        return False
    needs_rejoin = coordinator.need_rejoin

    def need_rejoin() -> bool:
        return coordinator._join_task is not None or bool(needs_rejoin())

    coordinator.need_rejoin = need_rejoin
    coordinator.join_group_async = types.MethodType(join_group_async, coordinator)
    return True


async def join_group_async(self: Any, timeout_ms: float | None = None) -> bool:
    """Drive JoinGroup and SyncGroup until joined, the timer expires, or an error.

    Same contract as kafka-python's ``BaseCoordinator.join_group_async``: True once the
    member has (re-)joined, False when ``timeout_ms`` ran out first (the join task stays
    in flight for the next call), raises on a non-retriable error.
    """
    from kafka import errors
    from kafka.structs import MemberState
    from kafka.util import Timer

    if not self._use_group_apis:
        raise errors.UnsupportedVersionError("Group Coordinator APIs require 0.9+ broker")
    timer = Timer(timeout_ms)
    while self._join_task is not None or self.need_rejoin():
        if self._join_task is None:
            if not await self.ensure_coordinator_ready_async(timeout_ms=timer.timeout_ms):
                return False
            if not self.rejoining:  # once per rebalance, not per attempt
                await self._on_join_prepare_async(
                    self._generation.generation_id,
                    self._generation.member_id,
                    timeout_ms=timer.timeout_ms,
                )
                self.rejoining = True
                self._disable_heartbeat()
            self._join_task = self._manager.call_soon(self._do_join_and_sync_async)
        try:
            # A finished task answers at once: its result is used, not thrown away.
            assignment = await self._manager.wait_for(self._join_task, timer.timeout_ms)
        except errors.KafkaTimeoutError:
            return False  # the task stays in flight; the next poll awaits it
        except (
            errors.UnknownMemberIdError,
            errors.RebalanceInProgressError,
            errors.IllegalGenerationError,
            errors.MemberIdRequiredError,
        ):
            self._join_task = None  # the response handlers reset what needs resetting
            continue
        except errors.RetriableError:
            self._join_task = None
            if timer.expired:
                return False
            backoff_ms = self.config["retry_backoff_ms"]
            if timer.timeout_ms is not None:
                backoff_ms = min(backoff_ms, timer.timeout_ms)
            if backoff_ms > 0:
                await self._manager._net.sleep(backoff_ms / 1000)
            continue
        except errors.KafkaError:
            self._join_task = None
            raise
        self._join_task = None
        with self._lock:
            self.rejoining = False
            self.rejoin_needed = False
            self.state = MemberState.STABLE
            self._enable_heartbeat()
        await self._on_join_complete_async(
            self._generation.generation_id,
            self._generation.member_id,
            self._generation.protocol,
            assignment,
        )
        return True
    return True
