"""Running the host tools the L3 shell needs (ip, nft, ethtool, ovs-vsctl, keepalived).

Each call checks the exit status unless told not to and puts the command line and
its stderr into the error, so a failing step says what failed and why.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from dataclasses import dataclass


class L3CommandError(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip()[-2000:]
        super().__init__(f"`{shlex.join(argv)}` exited {returncode}: {detail}")


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


async def run(
    argv: Sequence[str], *, stdin: str | None = None, check: bool = True, time_limit: float = 30.0
) -> CommandResult:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), time_limit
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise L3CommandError(argv, -1, f"timed out after {time_limit:g} s") from None
    result = CommandResult(
        proc.returncode if proc.returncode is not None else -1,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
    )
    if check and not result.ok:
        raise L3CommandError(argv, result.returncode, result.stderr or result.stdout)
    return result


def in_namespace(namespace: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` inside a named network namespace (``None``: the current one)."""
    if namespace is None:
        return list(argv)
    return ["ip", "netns", "exec", namespace, *argv]


def ip_command(namespace: str | None, *args: str) -> list[str]:
    """``ip [-n NS] args``: ``-n`` avoids a fork of ``ip netns exec``."""
    if namespace is None:
        return ["ip", *args]
    return ["ip", "-n", namespace, *args]
