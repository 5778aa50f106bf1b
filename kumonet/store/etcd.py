"""The etcd v3 backend of the store contract.

The wire protocol is etcd's gRPC API. The message and stub classes come from
``aetcd`` (pinned; maintained, generated for current grpcio/protobuf and
compatible with etcd 3.4's API). Its ``Client`` is not used: it binds one
endpoint and hides per-call deadlines, and a controller needs failover
between the members and a hard bound on how long a call may take.

How the contract maps onto etcd:

* Every read is linearizable (etcd's default ``serializable=False``): a read
  that drives a decision never sees a state older than a completed write.
* Every call carries etcd's ``hasleader`` metadata, so a member cut off from
  the quorum answers "no leader" at once instead of blocking; the store then
  tries the next endpoint. All attempts of one call share a deadline
  (``timeout``, 2 s by default); past it :class:`StoreUnavailable` is raised.
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

DEFAULT_TIMEOUT = 2.0
# One attempt on one endpoint may not eat the whole budget: a hung member
# (stopped process, dropped packets) must leave time to try another one.
ATTEMPT_FRACTION = 0.5
# Pause after every endpoint failed once, so that a leader election (the
# common cause) is not hammered.
ROUND_PAUSE = 0.05
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


def parse_endpoints(url: str) -> tuple[list[str], float]:
    """``etcd://h1:p1,h2:p2[?timeout=2.0]`` -> (["h1:p1", "h2:p2"], timeout)."""
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
    timeout = DEFAULT_TIMEOUT
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name != "timeout":
            raise ValueError(f"unknown etcd store option {name!r} in {url!r}")
        try:
            timeout = float(value)
        except ValueError:
            raise ValueError(f"etcd store option timeout needs seconds, not {value!r}") from None
        if timeout <= 0:
            raise ValueError(f"etcd store option timeout must be positive: {url!r}")
    return endpoints, timeout


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

    def __init__(self, endpoints: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not endpoints:
            raise ValueError("an etcd store needs at least one endpoint")
        self._endpoints = [_Endpoint(address) for address in endpoints]
        self._timeout = timeout
        # The endpoint that answered last; calls start there and move on when
        # it fails, so a healthy member keeps the traffic.
        self._current = 0
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> EtcdStore:
        """Open ``etcd://host:port[,host:port...][?timeout=SECONDS]``; the
        store connects lazily, so opening never waits for the cluster."""
        endpoints, timeout = parse_endpoints(url)
        return cls(endpoints, timeout=timeout)

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
        tried_this_round = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            endpoint = self._endpoints[self._current]
            # The last endpoint of a round may use all that is left.
            share = remaining if len(self._endpoints) == 1 else remaining * ATTEMPT_FRACTION
            per_attempt = max(min(share, remaining), 0.05)
            try:
                return await attempt(endpoint, per_attempt)
            except grpc.aio.AioRpcError as error:
                refusal = _refusal(error)
                if refusal is not None:
                    raise refusal from error
                failures.append(f"{endpoint.address}: {error.details() or error.code().name}")
                if write and not _not_sent(error):
                    self._rotate()
                    raise StoreUnavailable(
                        f"etcd {what} may or may not have been applied: {failures[-1]}",
                        indeterminate=True,
                    ) from error
            self._rotate()
            tried_this_round += 1
            if tried_this_round >= len(self._endpoints):
                tried_this_round = 0
                await asyncio.sleep(min(ROUND_PAUSE, max(deadline - loop.time(), 0)))
        detail = "; ".join(failures[-len(self._endpoints) :]) or "no attempt finished"
        raise StoreUnavailable(
            f"etcd {what}: no member answered within {self._timeout:g} s"
            f" (no connection or no quorum: {detail})"
        )

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
                response = await asyncio.wait_for(call.read(), self._timeout * ATTEMPT_FRACTION)
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

        async def attempt(endpoint: _Endpoint, grpc_timeout: float) -> Any:
            # Serializable on purpose: the member list must come even from a
            # member without quorum, since that is when an operator looks.
            return await endpoint.cluster.MemberList(
                rpc.MemberListRequest(linearizable=False), timeout=grpc_timeout
            )

        try:
            listed = (await self._call("member list", attempt, write=False)).members
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
