"""The corrected kafka-python 3.0 group-join loop, driven step by step without a broker.

The coordinator here is a stand-in holding only the state the join loop reads and
writes; what is tested is the loop's logic, the part :mod:`mstream.providers.kafka_python_join`
changes. The real-broker behaviour (members splitting partitions through rebalances) is
tested in ``test_kafka.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine
from typing import Any

import pytest
from kafka import errors
from kafka.future import Future
from kafka.structs import MemberState

from mstream.providers.kafka_python_join import install, join_group_async


class Generation:
    generation_id = 3
    member_id = "member-1"
    protocol = "range"


class Manager:
    """Starts join tasks as plain futures; a wait on an unfinished one times out."""

    def __init__(self) -> None:
        self.tasks: list[Future] = []

    def call_soon(self, _coro_fn: Any) -> Future:
        task = Future()
        self.tasks.append(task)
        return task

    async def wait_for(self, future: Future, _timeout_ms: float | None) -> Any:
        if not future.is_done:
            raise errors.KafkaTimeoutError("poll timeout")
        return await future


class Coordinator:
    """The coordinator state the join loop touches."""

    _use_group_apis = True
    config = {"retry_backoff_ms": 0}

    def __init__(self) -> None:
        self._manager = Manager()
        self._join_task: Future | None = None
        self._lock = threading.Lock()
        self._generation = Generation()
        self.rejoining = False
        self.rejoin_needed = True
        self.wants_rejoin = True
        self.state = MemberState.REBALANCING
        self.heartbeat_enabled = True
        self.prepared = 0
        self.completed: list[bytes] = []

    async def _do_join_and_sync_async(self) -> bytes:  # pragma: no cover - never run
        return b""

    def need_rejoin(self) -> bool:
        return self.wants_rejoin

    async def ensure_coordinator_ready_async(self, timeout_ms: float | None = None) -> bool:
        return True

    async def _on_join_prepare_async(self, *_: Any, **__: Any) -> None:
        self.prepared += 1

    def _disable_heartbeat(self) -> None:
        self.heartbeat_enabled = False

    def _enable_heartbeat(self) -> None:
        self.heartbeat_enabled = True

    async def _on_join_complete_async(self, *args: Any) -> None:
        self.completed.append(args[-1])


def run(coro: Coroutine[Any, Any, bool]) -> bool:
    """Run a coroutine that never has to wait (every future it meets is settled)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return bool(stop.value)
    raise AssertionError("the join loop waited on an unsettled future")


def test_leader_whose_rejoin_need_cleared_mid_join_still_completes_the_join() -> None:
    coordinator = Coordinator()
    assert run(join_group_async(coordinator, 100)) is False  # the poll timed out
    assert len(coordinator._manager.tasks) == 1 and not coordinator.heartbeat_enabled

    # The leader's assignment step refreshed its snapshot: need_rejoin() turns false
    # while the SyncGroup is still in flight, then the task finishes between polls.
    coordinator.wants_rejoin = False
    coordinator._manager.tasks[0].success(b"assignment")

    assert run(join_group_async(coordinator, 100)) is True
    assert coordinator.completed == [b"assignment"]  # the assignment is applied
    assert coordinator.state is MemberState.STABLE
    assert coordinator.heartbeat_enabled  # heartbeats resume
    assert coordinator._join_task is None and not coordinator.rejoining
    assert len(coordinator._manager.tasks) == 1  # no second JoinGroup


def test_task_in_flight_is_awaited_not_abandoned_when_rejoin_need_clears() -> None:
    coordinator = Coordinator()
    run(join_group_async(coordinator, 100))
    coordinator.wants_rejoin = False
    assert run(join_group_async(coordinator, 100)) is False  # still waiting on it
    assert coordinator.completed == [] and coordinator._join_task is not None


def test_finished_task_result_is_used_not_replaced_by_a_new_join() -> None:
    coordinator = Coordinator()
    run(join_group_async(coordinator, 100))
    coordinator._manager.tasks[0].success(b"first")  # finishes between polls
    assert run(join_group_async(coordinator, 100)) is True
    assert coordinator.completed == [b"first"]
    assert len(coordinator._manager.tasks) == 1
    assert coordinator.prepared == 1  # the listener's revoke ran once


def test_rebalance_error_starts_a_new_attempt_without_preparing_again() -> None:
    coordinator = Coordinator()
    run(join_group_async(coordinator, 100))
    coordinator._manager.tasks[0].failure(errors.RebalanceInProgressError())
    assert run(join_group_async(coordinator, 100)) is False  # second attempt in flight
    assert len(coordinator._manager.tasks) == 2
    assert coordinator.prepared == 1


def test_fatal_error_is_raised_and_clears_the_task() -> None:
    coordinator = Coordinator()
    run(join_group_async(coordinator, 100))
    coordinator._manager.tasks[0].failure(errors.GroupAuthorizationFailedError())
    with pytest.raises(errors.GroupAuthorizationFailedError):
        run(join_group_async(coordinator, 100))
    assert coordinator._join_task is None


def test_nothing_to_do_when_joined_and_no_rejoin_needed() -> None:
    coordinator = Coordinator()
    coordinator.wants_rejoin = False
    assert run(join_group_async(coordinator, 100)) is True
    assert coordinator._manager.tasks == []


def test_installed_need_rejoin_stays_true_while_a_join_task_exists() -> None:
    coordinator = Coordinator()

    class Consumer:
        _coordinator = coordinator

    assert install(Consumer())
    run(coordinator.join_group_async(100))  # type: ignore[attr-defined]
    coordinator.wants_rejoin = False  # what the leader's assignment step causes
    assert coordinator.need_rejoin()  # so the consumer's poll enters the join loop
    coordinator._manager.tasks[0].success(b"assignment")
    assert run(coordinator.join_group_async(100)) is True  # type: ignore[attr-defined]
    assert coordinator.completed == [b"assignment"]
    assert not coordinator.need_rejoin()


def test_install_leaves_a_coordinator_without_join_task_alone() -> None:
    class Consumer:
        _coordinator = object()

    assert not install(Consumer())
