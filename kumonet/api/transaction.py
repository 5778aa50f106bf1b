"""Store writes as small re-runnable commands (STYLE.md point 5).

``decide`` reads what it needs, decides, and returns a :class:`Plan`: the
compares that must still hold (the revisions it read, the keys it expects
absent), the ops, and the result to answer. If the compares fail, another
writer got there first: ``on_conflict`` drops any in-process hints the
decision used, and the command is re-run from scratch on fresh reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from kumonet.model.errors import ServiceUnavailable
from kumonet.store.contract import Compare, Op, Store

T = TypeVar("T")


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Plan(Generic[T]):
    compares: Sequence[Compare]
    ops: Sequence[Op]
    result: T
    on_conflict: Callable[[], None] = _nothing
    on_success: Callable[[], None] = _nothing


async def commit_with_retry(store: Store, decide: Callable[[], Awaitable[Plan[T]]], *,
                            attempts: int = 100) -> T:
    """Run ``decide`` and commit its plan until the plan's compares hold.

    Errors ``decide`` raises (a refusal such as 409) end the command. Lost
    races back off a little so that many writers on one key make progress."""
    for attempt in range(attempts):
        plan = await decide()
        if not plan.ops:
            return plan.result
        try:
            result = await store.txn(plan.compares, plan.ops)
        except BaseException:
            plan.on_conflict()
            raise
        if result.succeeded:
            plan.on_success()
            return plan.result
        plan.on_conflict()
        if attempt >= 3:
            await asyncio.sleep(min(0.001 * attempt, 0.05))
    raise ServiceUnavailable("The request lost too many races for the same resources; "
                             "retry it.", type_name="RetryRequest")
