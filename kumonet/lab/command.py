"""Running external commands (ip, ovs-vsctl, ethtool, ...) from asyncio.

Every call checks the exit status by default and puts the command line and its
stderr into the error, so a failing step says what failed and why.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kumonet.lab.errors import LabError


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandError(LabError):
    def __init__(self, result: CommandResult) -> None:
        self.result = result
        detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
        super().__init__(f"`{shlex.join(result.argv)}` exited {result.returncode}: {detail}")


class CommandTimeout(LabError):
    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(f"`{shlex.join(argv)}` did not finish within {timeout:g} s")


async def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    stdin: str | None = None,
    time_limit: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``argv`` to completion; raise CommandError on a non-zero exit when
    ``check``, CommandTimeout (after killing it) when it outlives ``time_limit``."""
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
        )
    except FileNotFoundError as exc:
        raise LabError(f"`{argv[0]}` is not installed (see tools/install-system.sh)") from exc
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), time_limit
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CommandTimeout(argv, time_limit) from None
    except asyncio.CancelledError:
        # a cancelled step must not leave its command running behind a teardown
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    result = CommandResult(
        tuple(argv),
        proc.returncode if proc.returncode is not None else -1,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
    )
    if check and not result.ok:
        raise CommandError(result)
    return result


async def all_of(*steps: Coroutine[Any, Any, None]) -> None:
    """Run steps concurrently; if one fails, cancel and wait for the others
    (nothing keeps building while a failed ``up`` tears down) and raise the
    first error itself rather than an ExceptionGroup."""
    try:
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(step)
    except ExceptionGroup as group_error:
        raise group_error.exceptions[0] from None


async def wait_until(
    ready: Callable[[], bool], what: str, *, time_limit: float = 10.0, interval: float = 0.01
) -> None:
    """Poll a cheap local check (a file or socket appearing) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while not ready():
        if loop.time() > deadline:
            raise LabError(f"{what} within {time_limit:g} s")
        await asyncio.sleep(interval)


def in_netns(namespace: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside a named network namespace (``ip netns exec`` execs,
    so the pid of the process is the pid of the command itself)."""
    return ["ip", "netns", "exec", namespace, *argv]
