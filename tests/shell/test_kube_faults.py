"""The API streams and one-shot calls against a sick API server, on a fake clock.

The list-then-watch stream is driven by a scripted `call` whose answers look like aiohttp's raw
responses; one-shot calls go through a real client against a local HTTP server. No test waits
through a backoff for real: `sleep` records the delay and moves a fake clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from podtrail.shell import kube
from podtrail.shell.backoff import Backoff
from podtrail.shell.kube import CallPolicy, Kube, StreamItem


class ScriptEnded(BaseException):
    """The stream asked for more answers than the test scripted (a BaseException: not retried)."""


class FakeClock:
    """Monotonic time that moves only when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay

    def monotonic(self) -> float:
        return self.now


class FakeContent:
    def __init__(self, chunks: Iterable[bytes], error: BaseException | None) -> None:
        self._chunks = list(chunks)
        self._error = error

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._error is not None:
            raise self._error


class FakeResponse:
    """What a raw (unpreloaded) kubernetes_asyncio call returns: an aiohttp response."""

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        *,
        headers: dict[str, str] | None = None,
        chunks: Iterable[bytes] = (),
        error: BaseException | None = None,
    ) -> None:
        self.status = status
        self.reason = "scripted"
        self.headers = headers or {}
        self._body = body
        self.content = FakeContent(chunks, error)
        self.released = False

    async def read(self) -> bytes:
        return self._body

    def release(self) -> None:
        self.released = True


Answer = FakeResponse | BaseException


class FakeCall:
    """A list/watch call that answers from a script and remembers what it was asked."""

    def __init__(self, answers: Iterable[Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.responses: list[FakeResponse] = []

    async def __call__(self, **kwargs: Any) -> FakeResponse:
        self.requests.append(kwargs)
        if not self.answers:
            raise ScriptEnded
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        self.responses.append(answer)
        return answer

    def watches(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("watch")]


def pod(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": version}}


def listing(*items: dict[str, Any], version: str = "10", cont: str | None = None) -> FakeResponse:
    meta: dict[str, Any] = {"resourceVersion": "" if cont else version}
    if cont:
        meta["continue"] = cont
    return FakeResponse(body=json.dumps({"metadata": meta, "items": list(items)}).encode())


def event(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def watch(*lines: bytes) -> FakeResponse:
    return FakeResponse(chunks=lines)


def status_error(code: int, message: str = "", **details: Any) -> bytes:
    obj: dict[str, Any] = {"kind": "Status", "code": code, "message": message}
    if details:
        obj["details"] = details
    return event("ERROR", obj)


def failed(status: int, retry_after: str | None = None) -> FakeResponse:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return FakeResponse(status, b'{"kind":"Status"}', headers=headers)


class Harness:
    """One stream on a fake clock, with its restarts, successes and request counts recorded."""

    def __init__(self, answers: Iterable[Answer], jitter: Callable[[], float] = lambda: 0.5):
        self.clock = FakeClock()
        self.call = FakeCall(answers)
        self.restarts: list[str] = []
        self.ups = 0
        self.counted: list[tuple[str, str]] = []
        self.policy = CallPolicy(
            on_request=lambda call, result: self.counted.append((call, result)),
            sleep=self.clock.sleep,
            jitter=jitter,
            monotonic=self.clock.monotonic,
        )

    def stream(self, since: str | None = None) -> AsyncIterator[StreamItem]:
        return kube._list_then_watch(
            self.call, self.restarts.append, since, on_up=self.up, policy=self.policy
        )

    def up(self) -> None:
        self.ups += 1

    async def take(self, count: int, since: str | None = None) -> list[StreamItem]:
        stream = self.stream(since)
        try:
            return [await anext(stream) for _ in range(count)]
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator


def kinds(items: list[StreamItem]) -> list[str]:
    return [item.kind for item in items]


# --- the stream ---------------------------------------------------------------------------------


async def test_a_throttled_watch_waits_as_told_and_longer_each_time() -> None:
    harness = Harness(
        [listing(), *[failed(429, "3") for _ in range(8)], watch(event("ADDED", pod("a", "11")))]
    )

    items = await harness.take(4)

    assert kinds(items) == ["LISTING", "LISTED", "SYNCED", "ADDED"]
    assert harness.restarts == ["throttled"] * 8
    # Base delays 0.5 · 2^n (capped at 30) jittered to 3/4, never under the Retry-After of 3 s.
    assert harness.clock.sleeps == [3, 3, 3, 3, 6, 12, 22.5, 22.5]
    assert harness.counted.count(("watch", "429")) == 8
    assert ("watch", "2xx") in harness.counted
    assert all(response.released for response in harness.call.responses[1:9])


async def test_a_long_retry_after_is_honoured_up_to_the_cap() -> None:
    harness = Harness(
        [listing(), failed(429, "120"), failed(503, "7"), watch(event("ADDED", pod("a", "11")))]
    )

    await harness.take(4)

    assert harness.clock.sleeps == [30.0, 7.0]
    assert harness.restarts == ["throttled", "server-error"]


async def test_server_errors_back_off_capped_and_jittered() -> None:
    jitters = itertools.cycle([0.0, 0.999])
    answers: list[Answer] = [listing()]
    answers += [failed(500 if n % 2 else 503) for n in range(12)]
    answers.append(watch(event("ADDED", pod("a", "11"))))
    harness = Harness(answers, jitter=lambda: next(jitters))

    await harness.take(4)

    sleeps = harness.clock.sleeps
    assert harness.restarts == ["server-error"] * 12
    assert harness.counted.count(("watch", "5xx")) == 12
    assert max(sleeps) <= 30.0
    bases = [min(30.0, 0.5 * 2**n) for n in range(12)]
    for delay, base in zip(sleeps, bases, strict=True):
        assert base / 2 <= delay <= base
    assert len(set(sleeps[-4:])) == 2  # at the cap, the jitter still spreads the clients out


async def test_a_forbidden_listing_is_a_client_error_and_is_retried() -> None:
    harness = Harness([failed(403), listing(pod("a", "5")), watch(event("ADDED", pod("b", "11")))])

    items = await harness.take(4)

    assert kinds(items) == ["LISTING", "LISTING", "LISTED", "SYNCED"]
    assert harness.restarts == ["client-error"]
    assert harness.counted[:2] == [("list", "4xx"), ("list", "2xx")]
    assert harness.clock.sleeps == [0.375]


async def test_in_band_errors_back_off_and_watch_again_from_the_same_version() -> None:
    harness = Harness(
        [
            listing(version="10"),
            watch(status_error(500, "internal")),
            watch(status_error(504, "Too large resource version")),
            watch(status_error(429, "slow down", retryAfterSeconds=4)),
            watch(event("ADDED", pod("a", "11"))),
        ]
    )

    items = await harness.take(4)

    assert kinds(items)[-1] == "ADDED"
    assert harness.restarts == ["server-error", "server-error", "throttled"]
    assert harness.clock.sleeps == [0.375, 0.75, 4.0]
    assert [w["resource_version"] for w in harness.call.watches()] == ["10"] * 4


async def test_gone_relists_at_once_and_hands_nothing_over_twice() -> None:
    harness = Harness(
        [
            listing(pod("a", "5"), version="10"),
            watch(event("ADDED", pod("b", "11")), status_error(410, "too old")),
            listing(pod("a", "5"), pod("b", "11"), version="12"),
            watch(event("ADDED", pod("c", "13"))),
        ]
    )

    items = await harness.take(8)

    assert [(i.kind, [o["metadata"]["name"] for o in i.items] or i.obj) for i in items] == [
        ("LISTING", None),
        ("LISTED", ["a"]),
        ("SYNCED", None),
        ("ADDED", pod("b", "11")),
        ("LISTING", None),
        ("LISTED", ["a", "b"]),
        ("SYNCED", None),
        ("ADDED", pod("c", "13")),
    ]
    assert harness.restarts == ["gone"]
    assert harness.clock.sleeps == []
    assert [w["resource_version"] for w in harness.call.watches()] == ["10", "12"]


async def test_repeated_gone_backs_off() -> None:
    answers: list[Answer] = []
    for _ in range(3):
        answers += [listing(), watch(status_error(410))]
    answers += [listing(), watch(event("ADDED", pod("a", "11")))]
    harness = Harness(answers)

    items = await harness.take(13)

    assert kinds(items)[-1] == "ADDED"
    assert harness.restarts == ["gone"] * 3
    assert harness.clock.sleeps == [0.75, 1.5]  # the first 410 re-lists at once


async def test_a_server_back_from_an_outage_answering_gone_is_relisted_at_once() -> None:
    # The outage built a long backoff; the server's first answer after it is 410 (its watch
    # cache starts anew): the re-list must not wait out the outage's backoff.
    harness = Harness(
        [
            listing(version="10"),
            *[failed(503) for _ in range(6)],
            watch(status_error(410, "too old resource version")),
            listing(pod("a", "30"), version="31"),
            watch(event("ADDED", pod("b", "32"))),
        ]
    )

    items = await harness.take(7)

    assert kinds(items) == ["LISTING", "LISTED", "SYNCED", "LISTING", "LISTED", "SYNCED", "ADDED"]
    assert harness.restarts == ["server-error"] * 6 + ["gone"]
    assert harness.clock.sleeps == [0.375, 0.75, 1.5, 3.0, 6.0, 12.0]  # none after the 410


async def test_a_gone_watch_status_relists_too() -> None:
    harness = Harness(
        [failed(410), listing(version="20"), watch(event("ADDED", pod("a", "21")))],
    )

    items = await harness.take(4, since="7")

    assert kinds(items) == ["LISTING", "LISTED", "SYNCED", "ADDED"]
    assert harness.restarts == ["gone"]
    assert harness.counted[0] == ("watch", "410")


async def test_undecodable_and_empty_watches_back_off_and_resume_where_they_were() -> None:
    harness = Harness(
        [
            listing(version="10"),
            watch(),  # an empty body, at once
            watch(b"<html>bad gateway</html>\n"),
            watch(event("ADDED", pod("a", "11")), b'{"type": "MODIFIED", "obj'),  # truncated
            watch(b'"just a string"\n'),
            watch(b"\xff\xfe\n"),
            watch(event("ADDED", pod("b", "12"))),
        ]
    )

    items = await harness.take(5)

    assert [i.obj["metadata"]["name"] for i in items[3:] if i.obj] == ["a", "b"]
    assert harness.restarts == ["empty", "decode", "decode", "decode", "decode"]
    # The good event in the truncated watch reset the backoff.
    assert harness.clock.sleeps == [0.375, 0.75, 0.375, 0.75, 1.5]
    assert [w["resource_version"] for w in harness.call.watches()] == [
        "10",
        "10",
        "10",
        "11",
        "11",
        "11",
    ]


async def test_connection_failures_are_retried() -> None:
    harness = Harness(
        [
            aiohttp.ClientConnectionError("refused"),
            ConnectionResetError("reset"),
            listing(),
            FakeResponse(error=aiohttp.ClientPayloadError("cut")),
            watch(event("ADDED", pod("a", "11"))),
        ]
    )

    items = await harness.take(6)

    assert kinds(items) == ["LISTING", "LISTING", "LISTING", "LISTED", "SYNCED", "ADDED"]
    assert harness.restarts == ["connection"] * 3
    assert harness.counted == [
        ("list", "connection"),
        ("list", "connection"),
        ("list", "2xx"),
        ("watch", "2xx"),
        ("watch", "2xx"),
    ]


async def test_a_watch_cut_mid_stream_is_a_connection_restart() -> None:
    harness = Harness(
        [
            listing(),
            FakeResponse(
                chunks=[event("ADDED", pod("a", "11"))], error=aiohttp.ClientPayloadError("cut")
            ),
            watch(event("ADDED", pod("b", "12"))),
        ]
    )

    items = await harness.take(5)

    assert [i.obj["metadata"]["name"] for i in items if i.obj] == ["a", "b"]
    assert harness.restarts == ["connection"]
    assert harness.call.watches()[-1]["resource_version"] == "11"


async def test_every_call_is_bounded_in_time() -> None:
    harness = Harness([listing(cont="next"), listing(), watch(event("ADDED", pod("a", "11")))])

    await harness.take(5)

    lists = [r for r in harness.call.requests if not r.get("watch")]
    for request in lists:
        assert request["_request_timeout"] == aiohttp.ClientTimeout(total=30.0, sock_connect=10.0)
    (watch_request,) = harness.call.watches()
    assert watch_request["timeout_seconds"] == 290
    assert watch_request["_request_timeout"] == aiohttp.ClientTimeout(
        total=None, sock_connect=10.0, sock_read=320
    )
    assert lists[1]["_continue"] == "next"


async def test_a_timed_out_request_is_a_timeout_restart() -> None:
    harness = Harness(
        [
            listing(),
            aiohttp.ServerTimeoutError("read"),
            TimeoutError(),
            watch(event("ADDED", pod("a", "11"))),
        ]
    )

    await harness.take(4)

    assert harness.restarts == ["timeout", "timeout"]
    assert harness.counted[1:3] == [("watch", "timeout"), ("watch", "timeout")]


async def test_a_watch_that_never_starts_answering_times_out() -> None:
    never = asyncio.Event()

    class Silent(FakeCall):
        async def __call__(self, **kwargs: Any) -> FakeResponse:
            if kwargs.get("watch") and len(self.watches()) == 0:
                self.requests.append(kwargs)
                await never.wait()
            return await super().__call__(**kwargs)

    harness = Harness([])
    harness.call = Silent([listing(), watch(event("ADDED", pod("a", "11")))])
    harness.policy = CallPolicy(
        request_timeout=0.01,
        on_request=lambda call, result: harness.counted.append((call, result)),
        sleep=harness.clock.sleep,
        jitter=lambda: 0.5,
        monotonic=harness.clock.monotonic,
    )

    items = await harness.take(4)

    assert kinds(items)[-1] == "ADDED"
    assert harness.restarts == ["timeout"]
    assert ("watch", "timeout") in harness.counted


async def test_a_watch_that_runs_its_course_is_watched_again_at_once() -> None:
    harness = Harness(
        [listing(), watch(event("ADDED", pod("a", "11"))), watch(event("MODIFIED", pod("a", "12")))]
    )

    items = await harness.take(5)

    assert kinds(items)[-2:] == ["ADDED", "MODIFIED"]
    assert harness.restarts == []
    assert harness.clock.sleeps == []
    assert [w["resource_version"] for w in harness.call.watches()] == ["10", "11"]


async def test_a_quiet_watch_that_ran_its_course_is_no_failure() -> None:
    harness = Harness([listing(), watch(), watch(event("ADDED", pod("a", "11")))])

    class Quiet(FakeContent):
        async def iter_any(self) -> AsyncIterator[bytes]:
            harness.clock.now += 290  # the server's timeoutSeconds passed, nothing happened
            for chunk in ():
                yield chunk

    harness.call.answers[1].content = Quiet((), None)  # type: ignore[union-attr]

    items = await harness.take(4)

    assert kinds(items)[-1] == "ADDED"
    assert harness.restarts == []
    assert harness.clock.sleeps == []


async def test_the_backoff_starts_over_after_a_success() -> None:
    harness = Harness(
        [
            listing(),
            failed(503),
            failed(503),
            failed(503),
            watch(event("ADDED", pod("a", "11"))),
            failed(503),
            watch(event("ADDED", pod("b", "12"))),
        ]
    )

    await harness.take(5)

    assert harness.clock.sleeps == [0.375, 0.75, 1.5, 0.375]


async def test_the_stream_never_ends_on_errors() -> None:
    kinds_of_failure: list[Answer] = [
        failed(429, "1"),
        failed(500),
        failed(403),
        aiohttp.ClientConnectionError(),
        aiohttp.ServerTimeoutError(),
        watch(b"not json\n"),
        watch(status_error(504)),
        RuntimeError("a bug"),
    ]
    answers: list[Answer] = [listing()]
    answers += [kinds_of_failure[n % len(kinds_of_failure)] for n in range(200)]
    answers.append(watch(event("ADDED", pod("a", "11"))))
    harness = Harness(answers)

    items = await harness.take(4)

    assert items[-1].kind == "ADDED"
    assert len(harness.restarts) == 200
    assert set(harness.restarts) == {
        "throttled",
        "server-error",
        "client-error",
        "connection",
        "timeout",
        "decode",
        "unexpected",
    }
    assert all(0 < delay <= 30 for delay in harness.clock.sleeps)


async def test_cancellation_ends_the_stream() -> None:
    harness = Harness([listing(), asyncio.CancelledError()])

    stream = harness.stream()
    assert [(await anext(stream)).kind for _ in range(3)] == ["LISTING", "LISTED", "SYNCED"]
    with pytest.raises(asyncio.CancelledError):
        await anext(stream)
    assert harness.restarts == []


async def test_list_pages_and_watch_responses_report_the_stream_up() -> None:
    harness = Harness(
        [listing(cont="x"), listing(), failed(500), watch(event("ADDED", pod("a", "11")))]
    )

    await harness.take(5)

    assert harness.ups == 3  # two pages, one watch response; the 500 is no success


# --- one-shot calls -----------------------------------------------------------------------------


async def test_retrying_waits_as_told_then_succeeds() -> None:
    clock = FakeClock()
    errors = [ApiException(status=429), ApiException(status=503)]
    errors[0].headers = {"Retry-After": "2"}

    async def attempt() -> str:
        if errors:
            raise errors.pop(0)
        return "done"

    result = await kube.retrying(attempt, backoff=Backoff(jitter=lambda: 0.5), sleep=clock.sleep)

    assert result == "done"
    assert clock.sleeps == [2.0, 0.75]


async def test_retrying_gives_up_after_its_attempts_and_never_retries_a_lasting_error() -> None:
    clock = FakeClock()
    tries = 0

    async def throttled() -> None:
        nonlocal tries
        tries += 1
        raise ApiException(status=429)

    with pytest.raises(ApiException):
        await kube.retrying(throttled, backoff=Backoff(jitter=lambda: 0.5), sleep=clock.sleep)
    assert tries == 3
    assert len(clock.sleeps) == 2

    async def missing() -> None:
        raise kube.NotFoundError("x")

    clock.sleeps.clear()
    with pytest.raises(kube.NotFoundError):
        await kube.retrying(missing, backoff=Backoff(), sleep=clock.sleep)
    assert clock.sleeps == []


class FakeApiServer:
    """A local HTTP server answering namespace reads from a script of statuses."""

    def __init__(self, statuses: Iterable[int | None]) -> None:
        self.statuses = list(statuses)
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        status = self.statuses.pop(0) if self.statuses else 200
        if status is None:  # a server that never answers
            self.holding.set()
            await self.release.wait()
            status = 200
        headers = {"Retry-After": "1"} if status == 429 else {}
        body = {"metadata": {"name": request.match_info["name"]}}
        return web.json_response(body, status=status, headers=headers)

    async def __aenter__(self) -> FakeApiServer:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{name}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.release.set()
        assert self.runner is not None
        await self.runner.cleanup()


def local_kube(port: int, clock: FakeClock, counted: list[tuple[str, str]], **kwargs: Any) -> Kube:
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    return Kube(
        client.ApiClient(configuration),
        on_request=lambda call, result: counted.append((call, result)),
        sleep=clock.sleep,
        jitter=lambda: 0.5,
        **kwargs,
    )


async def test_a_throttled_read_is_retried_through_the_client() -> None:
    clock, counted = FakeClock(), []
    async with FakeApiServer([429, 503]) as server:
        api = local_kube(server.port, clock, counted)
        try:
            found = await api.retried(lambda: api.get_namespace("team-a"))
        finally:
            await api.close()

    assert found == {"metadata": {"name": "team-a"}}
    assert counted == [("get", "429"), ("get", "5xx"), ("get", "2xx")]
    assert clock.sleeps == [1.0, 0.75]


class LoopTime:
    """The running loop's clock, stopped, and moved on only by the test.

    The HTTP client bounds a call with a timer on the loop's clock (loop.time), not with a
    sleep: with the clock stopped, the timer fires when the test moves the clock past it.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.offset = 0.0

    def __enter__(self) -> LoopTime:
        stopped_at = self.loop.time()
        self.loop.time = lambda: stopped_at + self.offset  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        del self.loop.time

    async def advance(self, seconds: float) -> None:
        self.offset += seconds
        for _ in range(20):  # the timers due fire on the loop's next turns
            await asyncio.sleep(0)


async def test_a_server_that_never_answers_holds_a_call_no_longer_than_its_timeout() -> None:
    clock, counted = FakeClock(), []
    async with FakeApiServer([None]) as server:
        api = local_kube(server.port, clock, counted, request_timeout=2.0)
        try:
            with LoopTime() as time:
                call = asyncio.create_task(api.get_namespace("team-a"))
                await server.holding.wait()  # the request arrived; no answer will come
                await time.advance(1.99)
                assert not call.done(), "the call gave up before its timeout"
                await time.advance(0.02)
                assert call.done(), "the call outlived its timeout"
                with pytest.raises(TimeoutError):
                    await call
        finally:
            await api.close()

    assert counted == [("get", "timeout")]
    assert clock.sleeps == [], "a one-shot call is not retried"


async def test_a_throttled_pod_watch_through_the_client_backs_off_then_streams() -> None:
    watch_answers = [429, 429, 200]
    seen_queries: list[dict[str, str]] = []

    async def pods(request: web.Request) -> web.StreamResponse:
        seen_queries.append(dict(request.query))
        if request.query.get("watch", "").lower() != "true":  # the client sends "True"
            return web.json_response(
                {"metadata": {"resourceVersion": "10"}, "items": [pod("a", "9")]}
            )
        status = watch_answers.pop(0)
        if status != 200:
            return web.json_response(
                {"kind": "Status"}, status=status, headers={"Retry-After": "3"}
            )
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(event("ADDED", pod("b", "11")))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/team-a/pods", pods)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    clock, counted, restarts = FakeClock(), [], []
    api = local_kube(runner.addresses[0][1], clock, counted)
    stream = api.pods("team-a", restarts.append)
    try:
        items = [await anext(stream) for _ in range(4)]
    finally:
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        await api.close()
        await runner.cleanup()

    assert kinds(items) == ["LISTING", "LISTED", "SYNCED", "ADDED"]
    assert restarts == ["throttled", "throttled"]
    assert clock.sleeps == [3.0, 3.0]
    assert counted == [("list", "2xx"), ("watch", "429"), ("watch", "429"), ("watch", "2xx")]
    assert seen_queries[-1]["resourceVersion"] == "10"
    assert seen_queries[-1]["timeoutSeconds"] == "290"
