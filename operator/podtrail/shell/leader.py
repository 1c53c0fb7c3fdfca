"""One active writer at a time: leader election through a coordination.k8s.io/v1 Lease.

The semantics are those of client-go's leader election. A replica takes the Lease when it is
missing, released (no holder) or expired; it renews it every retry period while it leads, and
steps down when it cannot renew within the renew deadline or sees another holder. Expiry is
judged on this replica's monotonic clock, from when it last saw the Lease change, never from
the timestamps written in it, so clock skew between nodes does not matter. Every write carries
the Lease's resourceVersion: of two replicas racing for it, one wins and the other gets a
conflict. A replica that shuts down while leading releases the Lease, so the standby takes over
at once instead of after the lease duration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from podtrail.shell import kube
from podtrail.shell.backoff import Backoff
from podtrail.shell.logs import get_logger

log = get_logger(__name__)

LEASE_SECONDS = 15.0
RENEW_DEADLINE_SECONDS = 10.0
RETRY_PERIOD_SECONDS = 2.0
_JITTER_FACTOR = 1.2  # standby retries spread over [retry, retry × 2.2], as in client-go

Raw = dict[str, Any]
T = TypeVar("T")


class LeaseApi(Protocol):
    """The Lease calls the elector makes (podtrail.shell.kube.Kube provides them)."""

    async def get_lease(self, namespace: str, name: str) -> Raw | None:
        """The Lease, or None when it does not exist."""

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> Raw:
        """Create the Lease; AlreadyExistsError when another replica created it first."""

    async def replace_lease(self, namespace: str, name: str, lease: Mapping[str, Any]) -> Raw:
        """Write the Lease at its resourceVersion; ConflictError when it changed since."""


@dataclasses.dataclass(frozen=True, slots=True)
class ElectionConfig:
    """Which Lease to hold, as whom, and how fast to take it over and give it up."""

    identity: str
    lease_name: str = "podtrail"
    lease_namespace: str = "default"
    lease_seconds: float = LEASE_SECONDS
    renew_deadline_seconds: float = RENEW_DEADLINE_SECONDS
    retry_period_seconds: float = RETRY_PERIOD_SECONDS

    def __post_init__(self) -> None:
        """Refuse timings under which two replicas could both believe they lead."""
        if not self.identity:
            raise ValueError("a leader election identity must not be empty")
        if self.lease_seconds <= self.renew_deadline_seconds:
            raise ValueError("the lease duration must be longer than the renew deadline")
        if self.renew_deadline_seconds <= _JITTER_FACTOR * self.retry_period_seconds:
            raise ValueError("the renew deadline must be longer than 1.2 retry periods")


def default_identity(environ: Mapping[str, str] = os.environ) -> str:
    """$POD_NAME (else the host name) plus a random suffix, unique to this process.

    The suffix keeps a restarted container from mistaking its predecessor's Lease for its own.
    """
    base = environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{secrets.token_hex(4)}"


def default_namespace(environ: Mapping[str, str] = os.environ) -> str:
    """The operator's own namespace ($POD_NAMESPACE from the downward API), else "default"."""
    return environ.get("POD_NAMESPACE") or "default"


class _Attempt(enum.Enum):
    HOLDING = "holding"  # this replica holds the Lease now
    HELD_ELSEWHERE = "held elsewhere"  # another replica holds a Lease that has not expired
    RACED = "raced"  # another replica wrote first (409): read it again


def _micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Takes, keeps and releases the Lease; `is_leader` says whether this replica leads.

    `run()` loops until cancelled: stand by until the Lease is taken, renew it while leading,
    and stand by again after losing it. Callers follow the changes with `wait_until`.
    """

    def __init__(
        self,
        leases: LeaseApi,
        config: ElectionConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], datetime] = _utc_now,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._leases = leases
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._jitter = jitter
        self._backoff = Backoff(jitter=jitter)
        self.is_leader = False
        self._changed = asyncio.Event()
        self._observed: Raw | None = None  # the Lease as last read or written
        self._observed_spec: Raw = {}
        self._observed_at = 0.0  # this replica's clock when the Lease's spec last changed
        self._last_holder: str | None = None

    @property
    def holder(self) -> str:
        """The holder of the Lease as this replica last saw it ("" when nobody holds it)."""
        return str(self._observed_spec.get("holderIdentity") or "")

    async def run(self) -> None:
        """Stand by, lead, stand by again… until cancelled."""
        while True:
            await self._acquire()
            self._set_leader(True)
            log.info("leading", lease=self.config.lease_name, identity=self.config.identity)
            await self._keep_renewing()
            self._set_leader(False)

    async def wait_until(self, *, leading: bool) -> None:
        """Return once this replica leads (or stands by), at once if it already does."""
        while self.is_leader != leading:
            await self._changed.wait()

    async def release(self) -> bool:
        """Give the Lease up if this replica holds it, so a standby takes over at once.

        The holder is cleared and the duration set to one second. A conflict means another
        replica wrote the Lease meanwhile: it is theirs, and left alone. Transient errors are
        retried for up to the renew deadline, so a shutdown never hangs on a sick API server.
        """
        self._set_leader(False)
        if self._observed is None or self.holder != self.config.identity:
            return False
        now = self._wall()
        spec = {
            **self._observed_spec,
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": _micro_time(now),
            "renewTime": _micro_time(now),
        }
        body = {**self._observed, "spec": spec}
        give_up_at = self._clock() + self.config.renew_deadline_seconds
        backoff = Backoff(jitter=self._jitter)
        while True:
            try:
                written = await self._call(
                    self._leases.replace_lease(
                        self.config.lease_namespace, self.config.lease_name, body
                    )
                )
            except kube.ConflictError:
                log.info("lease already taken over; nothing to release")
                return False
            except Exception as error:
                if not kube.is_transient(error) or self._clock() >= give_up_at:
                    log.warning("could not release the lease", error=repr(error))
                    return False
                await self._sleep(backoff.next_delay(kube.retry_after(error)))
                continue
            self._observe(written)
            log.info("released the lease", lease=self.config.lease_name)
            return True

    def _set_leader(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _acquire(self) -> None:
        """Try every retry period (jittered, slower on errors) until this replica holds it."""
        while True:
            retry = self.config.retry_period_seconds
            delay = retry + retry * _JITTER_FACTOR * self._jitter()
            try:
                if await self._try_acquire_or_renew() is _Attempt.HOLDING:
                    self._backoff.reset()
                    return
                self._backoff.reset()
            except Exception as error:
                # Never slower than a standby's usual pace (unless told to wait): a leader cut
                # off by an outage takes its Lease back within seconds of the server's return.
                cap = retry * (1 + _JITTER_FACTOR) if kube.is_transient(error) else None
                delay = max(delay, self._failure_delay(error, cap))
            self._log_holder()
            await self._sleep(delay)

    async def _keep_renewing(self) -> None:
        """Renew every retry period; return when the Lease is lost."""
        renewed_at: float | None = self._clock()
        while renewed_at is not None:
            await self._sleep(self.config.retry_period_seconds)
            renewed_at = await self._renew_by_deadline(renewed_at)

    async def _renew_by_deadline(self, renewed_at: float) -> float | None:
        """Renew, retrying until the renew deadline; when renewed, None once lost."""
        deadline = renewed_at + self.config.renew_deadline_seconds
        raced = False
        while True:
            # Counted from before the request: a standby's countdown starts no earlier.
            attempt_at = self._clock()
            delay = self.config.retry_period_seconds
            try:
                outcome = await self._try_acquire_or_renew(timeout=deadline - attempt_at)
            except Exception as error:
                outcome = None
                delay = max(delay, self._failure_delay(error))
            if outcome is _Attempt.HOLDING:
                self._backoff.reset()
                return attempt_at
            if outcome is _Attempt.HELD_ELSEWHERE:
                log.warning("lost the lease: another replica holds it", holder=self.holder)
                return None
            left = deadline - self._clock()
            if left <= 0:
                log.warning(
                    "lost the lease: not renewed within the renew deadline",
                    renew_deadline_seconds=self.config.renew_deadline_seconds,
                )
                return None
            if outcome is _Attempt.RACED and not raced:
                raced = True  # another write came first: read the Lease again at once
                continue
            raced = False
            await self._sleep(min(delay, left))

    async def _try_acquire_or_renew(self, timeout: float | None = None) -> _Attempt:
        """One read and at most one write of the Lease."""
        name, namespace = self.config.lease_name, self.config.lease_namespace
        lease = await self._call(self._leases.get_lease(namespace, name), timeout)
        if lease is None:
            try:
                created = await self._call(
                    self._leases.create_lease(namespace, self._new_lease()), timeout
                )
            except kube.AlreadyExistsError:
                return _Attempt.RACED
            self._observe(created)
            return _Attempt.HOLDING
        self._observe(lease)
        if self.holder not in ("", self.config.identity) and not self._expired():
            return _Attempt.HELD_ELSEWHERE
        metadata = {
            key: value
            for key, value in (lease.get("metadata") or {}).items()
            if key != "managedFields"
        }
        body = {**lease, "metadata": metadata, "spec": self._next_spec()}
        try:
            written = await self._call(self._leases.replace_lease(namespace, name, body), timeout)
        except kube.ConflictError:
            return _Attempt.RACED
        self._observe(written)
        return _Attempt.HOLDING

    async def _call(self, pending: Awaitable[T], timeout: float | None = None) -> T:
        # A hung request must not outlive the renew deadline: the standby would take over.
        limit = self.config.renew_deadline_seconds if timeout is None else max(timeout, 0.001)
        return await asyncio.wait_for(pending, limit)

    def _observe(self, lease: Raw) -> None:
        spec = dict(lease.get("spec") or {})
        if self._observed is None or spec != self._observed_spec:
            self._observed_at = self._clock()
        self._observed = lease
        self._observed_spec = spec

    def _expired(self) -> bool:
        duration = float(self._observed_spec.get("leaseDurationSeconds") or 0)
        return self._observed_at + duration <= self._clock()

    def _new_lease(self) -> Raw:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.config.lease_name,
                "namespace": self.config.lease_namespace,
                "labels": {"app.kubernetes.io/name": "podtrail"},
            },
            "spec": {**self._next_spec(), "leaseTransitions": 0},
        }

    def _next_spec(self) -> Raw:
        """The spec that makes this replica the holder, renewed now."""
        now = _micro_time(self._wall())
        current = self._observed_spec
        transitions = int(current.get("leaseTransitions") or 0)
        ours = self.holder == self.config.identity
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(1, round(self.config.lease_seconds)),
            "acquireTime": current.get("acquireTime") if ours else now,
            "renewTime": now,
            "leaseTransitions": transitions if ours else transitions + 1,
        }

    def _failure_delay(self, error: Exception, cap: float | None = None) -> float:
        told = kube.retry_after(error)
        delay = self._backoff.next_delay(told)
        if cap is not None:
            delay = max(min(delay, cap), told or 0.0)
        if kube.is_transient(error):
            log.info("lease call failed", error=repr(error), retry_in=round(delay, 2))
        else:
            log.error("lease call failed", error=repr(error), retry_in=round(delay, 2))
        return delay

    def _log_holder(self) -> None:
        if self.holder != self._last_holder:
            self._last_holder = self.holder
            log.info("standing by", holder=self.holder or None, lease=self.config.lease_name)
