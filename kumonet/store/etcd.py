"""The etcd v3 backend of the store contract.

The wire protocol is etcd's gRPC API. The message and stub classes come from
``aetcd`` (pinned; maintained, generated for current grpcio/protobuf and
compatible with etcd 3.4's API). Its ``Client`` is not used: it binds one
endpoint and hides per-call deadlines, and a controller needs failover
between the members and a hard bound on how long a call may take.

How the contract maps onto etcd:

* Every read is linearizable (etcd's default ``serializable=False``): a read
  that drives a decision never sees a state older than a completed write.
* Calls go to the member that says it leads (asked through each member's
  maintenance Status, again after any failure), so that a dying leader
  refuses new writes at once instead of a follower forwarding them into the
  void. Every call carries etcd's ``hasleader`` metadata, so a member cut
  off from the quorum answers "no leader" at once instead of blocking. One
  attempt is bounded by ``attempt_timeout`` (0.5 s), all attempts of one
  call by ``timeout`` (2 s); past it :class:`StoreUnavailable` is raised.
* A write is retried on another endpoint only when it certainly was not
  applied (no connection, or refused for lack of a leader). Otherwise
  :class:`StoreUnavailable` carries ``indeterminate=True`` and the caller,
  whose writes are guarded by revision compares, re-reads and decides.
* ``watch`` is one etcd watch stream per call with ``prev_kv``; when the
  stream breaks it is re-created (on the next endpoint) from the last
  delivered revision + 1, so the iterator neither misses nor repeats events.
  A compacted start raises :class:`CompactedError` with etcd's compact
  revision. When no endpoint serves the watch within ``timeout`` the iterator
  raises :class:`StoreUnavailable`; resume with the last revision + 1.
* Leases are etcd leases (etcd enforces a minimum TTL of
  1.5 x election timeout, rounded up to whole seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import grpc
from aetcd import rpc

from kumonet.store.contract import (
    CompactedError,
    Compare,
    Delete,
    DeletePrefix,
    EventType,
    KeyValue,
    Lease,
    LeaseNotFound,
    MemberStatus,
    Op,
    Put,
    RangeResult,
    StoreError,
    StoreUnavailable,
    TxnResult,
    WatchEvent,
)

# A call's whole budget. Without a majority, a write is answered 503 once
# this runs out: under the 2 s operators are promised for the "suspended"
# state, with room for the HTTP round trip; an etcd election (about 1 s)
# still fits, so a leader change delays writes rather than failing them.
DEFAULT_TIMEOUT = 1.6
# One attempt on one endpoint may not eat the whole budget: a hung member
# (stopped process, dropped packets) must leave time to try another one.
# It also bounds the write-unavailability window after a leader dies: a
# write a follower forwarded to the dead leader is dropped by Raft and never
# answered, so only this deadline ends it (normal writes take milliseconds).
DEFAULT_ATTEMPT_TIMEOUT = 0.5
# Pause after every endpoint failed once, so that a leader election (the
# common cause) is not hammered.
ROUND_PAUSE = 0.05
# Asking the members who leads: each answers from its own state, no quorum
# needed, so this is quick on any live member.
PROBE_TIMEOUT = 0.25
STATUS_TIMEOUT = 1.0

_REQUIRE_LEADER = (("hasleader", "true"),)
_CHANNEL_OPTIONS = (
    # grpc's default reconnect backoff grows to 120 s; a member that comes
    # back must be used again within about a second.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Notice a silently dead member under an idle watch stream. etcd refuses
    # pings more often than every 5 s (its --grpc-keepalive-min-time).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
)
# Errors that prove the request was never executed.
_NOT_SENT_MARKERS = (
    "failed to connect",
    "connection refused",
    "no leader",
    "not capable",
    "dns resolution failed",
    # etcd sheds load before proposing: the request was not applied.
    "too many requests",
)
_COMPARE_RESULT = {
    "==": rpc.Compare.EQUAL,
    "!=": rpc.Compare.NOT_EQUAL,
    "<": rpc.Compare.LESS,
    ">": rpc.Compare.GREATER,
}
_COMPARE_TARGET = {
    "version": rpc.Compare.VERSION,
    "create_revision": rpc.Compare.CREATE,
    "mod_revision": rpc.Compare.MOD,
    "value": rpc.Compare.VALUE,
}

T = TypeVar("T")


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with ``prefix``"."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\x00"  # every key
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))


@dataclass(frozen=True, slots=True)
class EtcdOptions:
    endpoints: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT


def parse_url(url: str) -> EtcdOptions:
    """``etcd://h1:p1,h2:p2[?timeout=2.0&attempt_timeout=0.5]``: the members'
    client endpoints; ``timeout`` bounds a whole call (all attempts),
    ``attempt_timeout`` one attempt on one member."""
    scheme, sep, rest = url.partition("://")
    if scheme != "etcd" or not sep:
        raise ValueError(f"not an etcd store URL: {url!r}")
    hosts, _, query = rest.partition("?")
    endpoints = [h.strip().rstrip("/") for h in hosts.split(",") if h.strip()]
    if not endpoints:
        raise ValueError(f"an etcd store URL needs at least one host:port: {url!r}")
    for endpoint in endpoints:
        host, colon, port = endpoint.rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"etcd endpoint {endpoint!r} in {url!r} is not host:port")
    seconds = {"timeout": DEFAULT_TIMEOUT, "attempt_timeout": DEFAULT_ATTEMPT_TIMEOUT}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name not in seconds:
            raise ValueError(f"unknown etcd store option {name!r} in {url!r}")
        try:
            seconds[name] = float(value)
        except ValueError:
            raise ValueError(f"etcd store option {name} needs seconds, not {value!r}") from None
        if seconds[name] <= 0:
            raise ValueError(f"etcd store option {name} must be positive: {url!r}")
    return EtcdOptions(tuple(endpoints), seconds["timeout"], seconds["attempt_timeout"])


def _key(key: str) -> bytes:
    if not isinstance(key, str) or not key or "\x00" in key:
        raise StoreError(f"a key is a non-empty str without NUL, not {key!r}")
    return key.encode()


def _kv(message: Any) -> KeyValue:
    return KeyValue(
        key=message.key.decode(),
        value=bytes(message.value),
        create_revision=message.create_revision,
        mod_revision=message.mod_revision,
        version=message.version,
        lease=message.lease,
    )


def _op_span(op: Op) -> tuple[str, bool]:
    if isinstance(op, Put):
        return op.key, False
    if isinstance(op, Delete):
        return op.key, False
    return op.prefix, True


def _overlap(a: tuple[str, bool], b: tuple[str, bool]) -> bool:
    (ka, prefix_a), (kb, prefix_b) = a, b
    if prefix_a and kb.startswith(ka):
        return True
    if prefix_b and ka.startswith(kb):
        return True
    return ka == kb


def _check_distinct(ops: Sequence[Op]) -> None:
    # etcd refuses a put twice in one txn, but lets two deletes of one key
    # through; the contract refuses every pair of ops touching one key.
    spans = [_op_span(op) for op in ops]
    for i, first in enumerate(spans):
        for second in spans[i + 1 :]:
            if _overlap(first, second):
                raise StoreError(f"two ops on one key in a txn: {first[0]!r} and {second[0]!r}")


def _request_op(op: Op) -> Any:
    if isinstance(op, Put):
        if not isinstance(op.value, bytes):
            raise StoreError("a value is bytes")
        return rpc.RequestOp(
            request_put=rpc.PutRequest(key=_key(op.key), value=op.value, lease=op.lease)
        )
    if isinstance(op, Delete):
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=_key(op.key)))
    if isinstance(op, DeletePrefix):
        start = op.prefix.encode() or b"\x00"
        return rpc.RequestOp(
            request_delete_range=rpc.DeleteRangeRequest(
                key=start, range_end=prefix_end(op.prefix.encode())
            )
        )
    raise StoreError(f"not a txn op: {op!r}")


def _compare(compare: Compare) -> Any:
    message = rpc.Compare(
        key=_key(compare.key),
        result=_COMPARE_RESULT[compare.op],
        target=_COMPARE_TARGET[compare.target],
    )
    if compare.target == "value":
        message.value = compare.value
    else:
        setattr(message, compare.target, compare.value)
    return message


def _not_sent(error: grpc.aio.AioRpcError) -> bool:
    details = (error.details() or "").lower()
    return any(marker in details for marker in _NOT_SENT_MARKERS)


def _refusal(error: grpc.aio.AioRpcError) -> StoreError | None:
    """The contract error for an answer that is etcd's verdict, not an outage."""
    code, details = error.code(), error.details() or ""
    if _not_sent(error):
        return None  # transient: worth another attempt
    if code == grpc.StatusCode.NOT_FOUND and "lease" in details:
        return LeaseNotFound(details)
    if code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.NOT_FOUND,
    ):
        return StoreError(details)
    return None


class _Leader(Enum):
    FOUND = "found"  # _current is the leader
    ELSEWHERE = "elsewhere"  # a member we have no endpoint for leads
    NONE = "none"  # no live member leads


class _Endpoint:
    """One member's client URL and its gRPC channel and stubs."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self.kv = rpc.KVStub(self.channel)
        self.lease = rpc.LeaseStub(self.channel)
        self.watch = rpc.WatchStub(self.channel)
        self.cluster = rpc.ClusterStub(self.channel)
        self.maintenance = rpc.MaintenanceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close(grace=None)


class EtcdStore:
    """The store contract on an etcd v3 cluster (see the module docstring)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
    ) -> None:
        if not endpoints:
            raise ValueError("an etcd store needs at least one endpoint")
        self._endpoints = [_Endpoint(address) for address in endpoints]
        self._timeout = timeout
        self._attempt_timeout = min(attempt_timeout, timeout)
        # The endpoint calls go to: the leader when known, else the next
        # member in turn.
        self._current = 0
        # Whether _current is the leader (as last seen); cleared by any
        # failure, then found again by asking every member's Status.
        self._leader_known = False
        self._probe_lock = asyncio.Lock()
        # etcd member ids of the endpoints, as their Status last said.
        self._member_ids: dict[int, int] = {}
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> EtcdStore:
        """Open ``etcd://host:port[,host:port...][?timeout=S&attempt_timeout=S]``
        (see :func:`parse_url`); the store connects lazily, so opening never
        waits for the cluster."""
        options = parse_url(url)
        return cls(
            options.endpoints, timeout=options.timeout, attempt_timeout=options.attempt_timeout
        )

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(e.address for e in self._endpoints)

    # -- the retry loop ---------------------------------------------------------

    async def _call(
        self, what: str, attempt: Callable[[_Endpoint, float], Awaitable[T]], *, write: bool
    ) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        failures: list[str] = []
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if not self._leader_known:
                found = await self._find_leader(remaining)
                if found is _Leader.NONE:
                    # An election (or a dead leader not yet noticed): a
                    # request now would hang or be refused; ask again soon.
                    failures.append("no member leads (election in progress or no quorum)")
                    await asyncio.sleep(min(ROUND_PAUSE, max(deadline - loop.time(), 0)))
                    continue
            endpoint = self._endpoints[self._current]
            per_attempt = min(self._attempt_timeout, max(deadline - loop.time(), 0.01))
            try:
                return await attempt(endpoint, per_attempt)
            except grpc.aio.AioRpcError as error:
                refusal = _refusal(error)
                if refusal is not None:
                    raise refusal from error
                failures.append(f"{endpoint.address}: {error.details() or error.code().name}")
                self._leader_known = False
                if write and not _not_sent(error):
                    raise StoreUnavailable(
                        f"etcd {what} may or may not have been applied: {failures[-1]}",
                        indeterminate=True,
                    ) from error
                if _not_sent(error):
                    self._rotate()
        detail = "; ".join(dict.fromkeys(failures[-2 * len(self._endpoints) :]))
        raise StoreUnavailable(
            f"etcd {what}: no member answered within {self._timeout:g} s"
            f" (no connection or no quorum: {detail or 'no attempt finished'})"
        )

    async def _find_leader(self, remaining: float) -> _Leader:
        """Point ``_current`` at the member that says it is the leader.

        Calls go to the leader: a follower forwards writes to it, and when
        the leader dies such a forwarded write is dropped by Raft and never
        answered. Sent to the leader itself, the write fails at once with a
        refused connection, which proves it was not applied, and goes to the
        new leader as soon as one of the members reports leading."""
        async with self._probe_lock:
            if self._leader_known:
                return _Leader.FOUND
            timeout = min(PROBE_TIMEOUT, remaining)

            async def probe(index: int) -> tuple[int, int, int]:
                status = await self._endpoints[index].maintenance.Status(
                    rpc.StatusRequest(), timeout=timeout
                )
                return index, status.header.member_id, status.leader

            # The first member to say it leads settles it; a hung member
            # must not hold up the answer of the live ones.
            probes = [asyncio.create_task(probe(i)) for i in range(len(self._endpoints))]
            reported: set[int] = set()
            try:
                for next_answer in asyncio.as_completed(probes):
                    try:
                        index, member_id, leader = await next_answer
                    except grpc.aio.AioRpcError:
                        continue
                    self._member_ids[index] = member_id
                    if leader and leader == member_id:
                        self._current = index
                        self._leader_known = True
                        return _Leader.FOUND
                    reported.add(leader)
            finally:
                for task in probes:
                    task.cancel()
                await asyncio.gather(*probes, return_exceptions=True)
            self._rotate()
            # A leader that none of our endpoints is: go through a follower.
            # A leader that is one of them but did not answer is dead (its
            # followers have not noticed yet): wait for the election.
            if any(r and r not in self._member_ids.values() for r in reported):
                return _Leader.ELSEWHERE
            return _Leader.NONE

    def _rotate(self) -> None:
        self._current = (self._current + 1) % len(self._endpoints)

    async def _range(self, request: Any) -> Any:
        async def attempt(endpoint: _Endpoint, grpc_timeout: float) -> Any:
            return await endpoint.kv.Range(request, timeout=grpc_timeout, metadata=_REQUIRE_LEADER)

        return await self._call("read", attempt, write=False)

    async def _txn(self, request: Any) -> Any:
        async def attempt(endpoint: _Endpoint, grpc_timeout: float) -> Any:
            return await endpoint.kv.Txn(request, timeout=grpc_timeout, metadata=_REQUIRE_LEADER)

        return await self._call("write", attempt, write=True)

    # -- key-value -------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        response = await self._range(rpc.RangeRequest(key=_key(key)))
        return _kv(response.kvs[0]) if response.kvs else None

    async def range(self, prefix: str) -> RangeResult:
        raw = prefix.encode()
        response = await self._range(
            rpc.RangeRequest(key=raw or b"\x00", range_end=prefix_end(raw))
        )
        return RangeResult(tuple(_kv(kv) for kv in response.kvs), response.header.revision)

    async def stale_get(self, key: str) -> KeyValue | None:
        """A serializable read from whichever member answers, quorum or not:
        possibly stale, for showing state while the majority is lost."""
        response = await self._any_member_range(rpc.RangeRequest(key=_key(key), serializable=True))
        return _kv(response.kvs[0]) if response.kvs else None

    async def stale_range(self, prefix: str) -> RangeResult:
        """Like :meth:`stale_get` for a prefix; the revision is the answering
        member's."""
        raw = prefix.encode()
        response = await self._any_member_range(
            rpc.RangeRequest(key=raw or b"\x00", range_end=prefix_end(raw), serializable=True)
        )
        return RangeResult(tuple(_kv(kv) for kv in response.kvs), response.header.revision)

    async def _any_member_range(self, request: Any) -> Any:
        """Ask every member at once and take the first answer: a member
        that is stopped, hung or busy electing must not use up the budget
        of the one that can answer. Each member gets the whole call budget
        (a member without quorum can be slow while it campaigns)."""

        async def ask(endpoint: _Endpoint) -> tuple[_Endpoint, Any]:
            try:
                return endpoint, await endpoint.kv.Range(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as error:
                return endpoint, error

        asks = [asyncio.create_task(ask(e)) for e in self._endpoints]
        failures: list[str] = []
        try:
            for finished in asyncio.as_completed(asks):
                endpoint, answer = await finished
                if not isinstance(answer, grpc.aio.AioRpcError):
                    return answer
                refusal = _refusal(answer)
                if refusal is not None:
                    raise refusal from answer
                failures.append(f"{endpoint.address}: {answer.details() or answer.code().name}")
        finally:
            for task in asks:
                task.cancel()
            await asyncio.gather(*asks, return_exceptions=True)
        raise StoreUnavailable(
            f"etcd stale read: no member answered within {self._timeout:g} s"
            f" ({'; '.join(dict.fromkeys(failures))})"
        )

    async def revision(self) -> int:
        # Any linearizable read reports the store revision; a count-only read
        # of one key is the cheapest.
        response = await self._range(rpc.RangeRequest(key=b"\x00", count_only=True))
        revision: int = response.header.revision
        return revision

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        if not isinstance(value, bytes):
            raise StoreError("a value is bytes")
        result = await self.txn([], [Put(key, value, lease)])
        return result.revision

    async def delete(self, key: str) -> int:
        result = await self.txn([], [Delete(key)])
        return result.revision

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        _check_distinct(success)
        _check_distinct(failure)
        request = rpc.TxnRequest(
            compare=[_compare(c) for c in compares],
            success=[_request_op(op) for op in success],
            failure=[_request_op(op) for op in failure],
        )
        response = await self._txn(request)
        return TxnResult(bool(response.succeeded), response.header.revision)

    async def compact(self, revision: int) -> None:
        async def attempt(endpoint: _Endpoint, grpc_timeout: float) -> None:
            await endpoint.kv.Compact(
                rpc.CompactionRequest(revision=revision),
                timeout=grpc_timeout,
                metadata=_REQUIRE_LEADER,
            )

        try:
            await self._call("compact", attempt, write=True)
        except StoreError as error:
            # Compacting to a revision already compacted changes nothing.
            if "has been compacted" in str(error):
                return
            raise

    # -- watch -----------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        raw = prefix.encode()
        next_revision = start_revision
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        failures: list[str] = []
        while True:
            if self._closed:
                raise StoreError("the store is closed")
            endpoint = self._endpoints[self._current]
            create = rpc.WatchCreateRequest(
                key=raw or b"\x00",
                range_end=prefix_end(raw),
                start_revision=next_revision,
                prev_kv=True,
            )
            call = endpoint.watch.Watch(metadata=_REQUIRE_LEADER)
            try:
                await call.write(rpc.WatchRequest(create_request=create))
                # The "created" answer must come within the deadline: a hung
                # member must not hold the watch.
                response = await asyncio.wait_for(call.read(), self._attempt_timeout)
                while response is not grpc.aio.EOF:
                    failing_since = None
                    if response.compact_revision:
                        raise CompactedError(response.compact_revision)
                    if response.canceled:
                        # e.g. the member lost its leader: re-create elsewhere.
                        failures.append(f"{endpoint.address}: {response.cancel_reason}")
                        break
                    for event in response.events:
                        converted = WatchEvent(
                            EventType.DELETE if event.type == rpc.Event.DELETE else EventType.PUT,
                            _kv(event.kv),
                            bytes(event.prev_kv.value) if event.HasField("prev_kv") else None,
                        )
                        next_revision = converted.kv.mod_revision + 1
                        yield converted
                    response = await call.read()
            except grpc.aio.AioRpcError as error:
                failures.append(f"{endpoint.address}: {error.details() or error.code().name}")
            except TimeoutError:
                failures.append(f"{endpoint.address}: no answer to the watch request")
            finally:
                call.cancel()
            now = loop.time()
            if failing_since is None:
                failing_since = now
            elif now - failing_since > self._timeout:
                raise StoreUnavailable(
                    f"etcd watch from revision {next_revision}: no member served it within "
                    f"{self._timeout:g} s ({'; '.join(failures[-len(self._endpoints) :])})"
                )
            self._rotate()
            await asyncio.sleep(ROUND_PAUSE)

    # -- leases ----------------------------------------------------------------------

    async def grant_lease(self, ttl: int, *, lease_id: int = 0) -> Lease:
        """A new lease; ``lease_id`` asks for that id (etcd lets the client
        choose; 0 lets etcd choose), so that one lease can exist on the
        stores of several shards."""

        async def attempt(endpoint: _Endpoint, grpc_timeout: float) -> Any:
            return await endpoint.lease.LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl, ID=lease_id),
                timeout=grpc_timeout,
                metadata=_REQUIRE_LEADER,
            )

        response = await self._call("lease grant", attempt, write=True)
        if response.error:
            raise StoreError(response.error)
        return Lease(response.ID, response.TTL)

    async def keepalive_lease(self, lease_id: int) -> int:
        async def attempt(endpoint: _Endpoint, grpc_timeout: float) -> Any:
            call = endpoint.lease.LeaseKeepAlive(timeout=grpc_timeout, metadata=_REQUIRE_LEADER)
            try:
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
                return await call.read()
            finally:
                call.cancel()

        # A keepalive is idempotent: retrying it anywhere is safe.
        response = await self._call("lease keepalive", attempt, write=False)
        if response is grpc.aio.EOF or response.TTL <= 0:
            raise LeaseNotFound(f"lease {lease_id} not found")
        ttl: int = response.TTL
        return ttl

    async def revoke_lease(self, lease_id: int) -> None:
        async def attempt(endpoint: _Endpoint, grpc_timeout: float) -> None:
            await endpoint.lease.LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=lease_id), timeout=grpc_timeout, metadata=_REQUIRE_LEADER
            )

        await self._call("lease revoke", attempt, write=True)

    # -- members ---------------------------------------------------------------------

    async def members(self) -> Sequence[MemberStatus]:
        """Every member etcd lists, each asked for its own Status; members
        that don't answer are ``unreachable``. Ordered as the store's
        endpoints list them, then the rest in etcd's order."""

        try:
            listed = await self._member_list()
        except StoreUnavailable as error:
            return [
                MemberStatus(
                    name=e.address,
                    endpoint=e.address,
                    raft_state="unreachable",
                    healthy=False,
                    errors=(str(error),),
                )
                for e in self._endpoints
            ]
        order = {e.address: i for i, e in enumerate(self._endpoints)}

        def position(member: Any) -> int:
            for url in member.clientURLs:
                address = _address(url)
                if address in order:
                    return order[address]
            return len(order)

        members = sorted(listed, key=position)
        names = {m.ID: m.name or _hex(m.ID) for m in members}
        statuses = await asyncio.gather(*(self._member_status(m, names) for m in members))
        return statuses

    async def _member_list(self) -> Any:
        """The member list from whichever member answers first. Serializable
        and without ``hasleader`` on purpose: it must come even from a member
        without quorum, since that is when an operator looks."""
        failures: list[str] = []
        for offset in range(len(self._endpoints)):
            endpoint = self._endpoints[(self._current + offset) % len(self._endpoints)]
            try:
                response = await endpoint.cluster.MemberList(
                    rpc.MemberListRequest(linearizable=False), timeout=self._attempt_timeout
                )
            except grpc.aio.AioRpcError as error:
                failures.append(f"{endpoint.address}: {error.details() or error.code().name}")
                continue
            return response.members
        raise StoreUnavailable(f"etcd member list: no member answered ({'; '.join(failures)})")

    async def _member_status(self, member: Any, names: dict[int, str]) -> MemberStatus:
        name = names[member.ID]
        address = _address(member.clientURLs[0]) if member.clientURLs else ""
        known = {e.address: e for e in self._endpoints}
        endpoint = known.get(address)
        temporary = None
        if endpoint is None and address:
            endpoint = temporary = _Endpoint(address)
        try:
            if endpoint is None:
                raise StoreUnavailable("the member has no client URL")
            response = await endpoint.maintenance.Status(
                rpc.StatusRequest(), timeout=STATUS_TIMEOUT
            )
        except (grpc.aio.AioRpcError, StoreUnavailable) as error:
            detail = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
            return MemberStatus(
                name=name,
                endpoint=address,
                raft_state="unreachable",
                healthy=False,
                errors=(detail or "no answer",),
            )
        finally:
            if temporary is not None:
                await temporary.close()
        if response.leader == 0:
            state, leader = "Candidate", None
        elif response.leader == member.ID:
            state, leader = "Leader", name
        else:
            state, leader = "Follower", names.get(response.leader, _hex(response.leader))
        errors = tuple(response.errors)
        return MemberStatus(
            name=name,
            endpoint=address,
            raft_state=state,
            leader=leader,
            raft_term=response.raftTerm,
            commit_index=response.raftIndex,
            applied_index=response.raftAppliedIndex,
            db_size=response.dbSize,
            healthy=leader is not None and not errors,
            errors=errors,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for endpoint in self._endpoints:
            with contextlib.suppress(Exception):
                await endpoint.close()


def _address(url: str) -> str:
    """``http://127.0.0.1:2379`` -> ``127.0.0.1:2379``."""
    return url.split("://", 1)[-1].rstrip("/")


def _hex(member_id: int) -> str:
    return f"{member_id:x}"
