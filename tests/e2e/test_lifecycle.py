"""A pod's life on a real node: scheduling, images, init containers, sidecars, probes, hooks."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tests.e2e.conftest import Harness, plays
from tests.e2e.support import (
    TESTBOX,
    container,
    describe,
    entries,
    entry,
    has_entry,
    has_outcome,
    parse_time,
    pod,
    status_of,
)

SERVE = "mkdir -p /www && echo ok > /www/index.html && httpd -f -p 8080 -h /www"

Entry = dict[str, Any]


def _is(kind: str, summary: str = "") -> Callable[[Entry], bool]:
    return lambda e: e.get("type") == kind and e.get("summary", "").startswith(summary)


# Pairs that read in this order whenever they share a time (docs/facts.md, "Order within one
# second"): most times have whole seconds, so a pod's start or end often falls in one.
CAUSAL_PAIRS: list[tuple[Callable[[Entry], bool], Callable[[Entry], bool]]] = [
    (_is("Created"), _is("Scheduled")),
    (_is("Scheduled"), _is("SandboxReady")),
    (_is("SandboxReady"), _is("ContainerStarted")),
    (_is("SandboxReady"), _is("PhaseChanged")),
    (_is("ContainerStarted"), _is("ContainerReady")),
    (_is("ContainerStarted"), _is("ConditionChanged", "Condition Ready ")),
    (_is("ContainerReady"), _is("ConditionChanged", "Condition ContainersReady ")),
    (_is("ContainerStarted"), _is("PhaseChanged")),
    (_is("ContainerTerminated"), _is("PhaseChanged")),
    (_is("DeletionRequested"), _is("KillingStarted")),
    (_is("KillingStarted"), _is("ExitedOnTerm")),
    (_is("KillingStarted"), _is("KilledAfterGrace")),
    (_is("ExitedOnTerm"), _is("PhaseChanged")),
    (_is("KilledAfterGrace"), _is("PhaseChanged")),
    (_is("PhaseChanged"), _is("PodDeleted")),
]


def assert_causal_order(record: dict[str, Any]) -> None:
    """The timeline is in time order, and in lifecycle order among equal times."""
    timeline = status_of(record).get("timeline") or []
    times = [parse_time(e["time"]) for e in timeline]
    assert times == sorted(times), "the timeline is in time order"
    for i, first in enumerate(timeline):
        for later in timeline[i + 1 :]:
            if later["time"] != first["time"]:
                break
            for before, after in CAUSAL_PAIRS:
                assert not (before(later) and after(first)), (
                    f"{later['summary']!r} should come before {first['summary']!r}"
                )


async def _run(
    h: Harness, prefix: str, body: dict[str, Any], until: Any, timeout: float = 120
) -> Any:
    namespace = await h.namespace(prefix)
    await h.kube.create_pod(namespace, body)
    return await h.kube.wait_record(namespace, body["metadata"]["name"], until, timeout=timeout)


async def succeeded(h: Harness) -> Any:
    body = pod("done", container("app", "echo hi"), restart="Never")
    # The kubelet's Pulled Event can reach the API after the pod's end: wait for it too.
    ended, pulled = has_outcome("Succeeded"), has_entry("ImagePulled", "app")
    return await _run(h, "succeeded", body, lambda r: ended(r) and pulled(r))


async def failed(h: Harness) -> Any:
    body = pod("broken", container("app", "exit 3"), restart="Never")
    # the outcome label follows the status write that settles the outcome
    return await _run(
        h,
        "failed",
        body,
        lambda r: (r["metadata"].get("labels") or {}).get("podtrail.io/outcome") == "Failed",
    )


async def oom_killed(h: Harness) -> Any:
    limits = {"limits": {"memory": "24Mi"}, "requests": {"memory": "24Mi"}}
    body = pod(
        "hog",
        container("app", "head -c 200m /dev/zero | tail > /dev/null", resources=limits),
        restart="Never",
    )
    namespace = await h.namespace("oom")
    await h.kube.create_pod(namespace, body)
    seen = await h.kube.wait_pod(namespace, "hog", lambda p: status_of(p).get("phase") == "Failed")
    ended = status_of(seen)["containerStatuses"][0]["state"]["terminated"]
    want = "OOMKilled" if ended.get("reason") == "OOMKilled" else "Failed"
    record = await h.kube.wait_record(namespace, "hog", has_outcome(want))
    return {"record": record, "terminated": ended}


async def unschedulable(h: Harness) -> Any:
    body = pod("nowhere", container("app", "sleep 60"), nodeSelector={"podtrail.io/none": "x"})

    def tried(record: dict[str, Any]) -> bool:
        # the scheduler's Event and its PodScheduled=False condition, in either order
        return has_entry("FailedScheduling")(record) and any(
            "PodScheduled" in e["summary"] for e in entries(record, "ConditionChanged")
        )

    return await _run(h, "unschedulable", body, tried)


async def image_pull_fails(h: Harness) -> Any:
    # A registry on a loopback port where nothing listens: fails at once, nothing leaves the node.
    body = pod("nopull", container("app", "true", image="127.0.0.1:5999/none:1"))
    return await _run(h, "pull", body, has_entry("ImagePullFailed"))


async def init_retried(h: Harness) -> Any:
    # The retry runs 3 s: while it runs, the pod shows the failed run as its last state; once it
    # succeeds, the kubelet prunes the failed run and its exit code is gone from the pod.
    flaky = "if [ -f /work/tried ]; then sleep 3; exit 0; fi; touch /work/tried; exit 1"
    mount = [{"name": "work", "mountPath": "/work"}]
    body = pod(
        "initpod",
        container("app", "sleep 3600", volumeMounts=mount),
        init=[
            container("first", "sleep 1", volumeMounts=mount),
            container("flaky", flaky, volumeMounts=mount),
        ],
        volumes=[{"name": "work", "emptyDir": {}}],
        grace=1,
    )
    return await _run(h, "init", body, has_entry("ContainerStarted", "app"))


async def native_sidecar(h: Harness) -> Any:
    ready = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    sidecar = container("proxy", SERVE, restartPolicy="Always", readinessProbe=ready)
    body = pod("sidecar", container("app", "sleep 3600"), init=[sidecar], grace=1)
    return await _run(h, "sidecar", body, has_entry("ContainerStarted", "app"))


async def probes(h: Harness) -> Any:
    body = pod(
        "probed",
        container(
            "web",
            SERVE,
            startupProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
            readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        ),
        container(
            "sad",
            "sleep 3600",
            readinessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1},
        ),
        container(
            "dying",
            "sleep 3600",
            livenessProbe={
                "exec": {"command": ["false"]},
                "periodSeconds": 1,
                "failureThreshold": 2,
            },
        ),
        grace=1,
    )

    def enough(record: dict[str, Any]) -> bool:
        return bool(
            entries(record, "StartupProbePassed", "web")
            and entries(record, "ContainerReady", "web")
            and any(e.get("count", 1) >= 3 for e in entries(record, "ProbeFailed", "sad"))
            and entries(record, "ContainerRestarted", "dying")
        )

    return await _run(h, "probes", body, enough, timeout=150)


async def readiness_lost(h: Harness) -> Any:
    # A pod of its own: its ContainersReady condition follows this container alone, so the
    # readiness entries carry the kubelet's own times (with other containers' Events in the
    # same pod, the kubelet's per-pod spam filter dropped this one's probe failure Event).
    body = pod(
        "flappy",
        container(
            "flappy",
            "touch /tmp/ready; sleep 15; rm /tmp/ready; sleep 3600",
            readinessProbe={
                "exec": {"command": ["test", "-f", "/tmp/ready"]},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
        ),
        grace=1,
    )
    return await _run(h, "flappy", body, has_entry("ContainerNotReady", "flappy"))


async def hook_failures(h: Harness) -> Any:
    hook = {"postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}}
    body = pod("posthook", container("app", "sleep 3600", lifecycle=hook), grace=1)
    return await _run(h, "posthook", body, has_entry("PostStartHookFailed", "app"))


@plays(succeeded)
def test_succeeded_pod(outcome: Any) -> None:
    status = outcome["status"]
    assert status["phase"] == "Succeeded"
    terminated = entry(outcome, "ContainerTerminated", "app")
    assert terminated["exitCode"] == 0
    assert terminated["source"] == "status"
    phases = [(e.get("fromPhase"), e.get("toPhase")) for e in entries(outcome, "PhaseChanged")]
    assert phases[-1][1] == "Succeeded"
    # No SandboxReady here: a pod this short may be reported only once its sandbox is gone
    # (docs/facts.md); the long-running pods' tests require it.
    for kind in ("Created", "Scheduled", "ContainerStarted"):
        entry(outcome, kind)
    assert TESTBOX in entry(outcome, "ImagePulled", "app")["summary"]
    # The waiting state is there when the kubelet wrote it: on a busy node its status manager
    # may write only the latest state of a pod this short (the pull-failure test requires it).
    waiting = entries(outcome, "ContainerWaiting", "app")
    assert [e["reason"] for e in waiting] in ([], ["ContainerCreating"])
    conditions = {(e["summary"], e["source"]) for e in entries(outcome, "ConditionChanged")}
    assert ("Condition Initialized is True", "status") in conditions
    assert_causal_order(outcome)
    created = parse_time(status["times"]["created"])
    assert created == parse_time(entry(outcome, "Created")["time"])


def index_of(record: dict[str, Any], kind: str, **fields: Any) -> int:
    """The index in the timeline of the first entry of a type (with these field values)."""
    for index, item in enumerate(status_of(record).get("timeline") or []):
        if item["type"] == kind and all(item.get(k) == v for k, v in fields.items()):
            return index
    raise AssertionError(f"no {kind} {fields or ''} entry in {describe(record)}")


@plays(failed)
def test_failed_pod(outcome: Any) -> None:
    status = outcome["status"]
    assert status["phase"] == "Failed"
    assert outcome["metadata"]["labels"]["podtrail.io/outcome"] == "Failed"
    ended = entry(outcome, "ContainerTerminated", "app")
    assert (ended["exitCode"], ended["reason"], ended["source"]) == (3, "Error", "status")
    assert ended["summary"] == "Container app terminated: exit 3 (Error)"
    assert status["summary"]["phase"] == "Failed", "the pod is still there: not its last phase"
    assert status["lastEvent"] in ("Phase Pending → Failed", "Phase Running → Failed")
    # Its own end, no deletion: nothing about a termination.
    assert "termination" not in status and not entries(outcome, "DeletionRequested")
    order = [
        index_of(outcome, "Created"),
        index_of(outcome, "Scheduled"),
        index_of(outcome, "ContainerTerminated", container="app"),
        index_of(outcome, "PhaseChanged", toPhase="Failed"),
    ]
    assert order == sorted(order), describe(outcome)
    assert_causal_order(outcome)
    # The phase's time is the container's end. `exit 3` runs for milliseconds: its start and
    # end are the same second or the next, either way round (the runtime may stamp the start
    # of a run this short after its end: seen on the local cluster under load, 1 s after).
    failed_at = entry(outcome, "PhaseChanged")
    assert failed_at["toPhase"] == "Failed" and failed_at["time"] == ended["time"]
    assert status["times"]["finished"] == ended["time"]
    started = parse_time(entry(outcome, "ContainerStarted", "app")["time"])
    assert abs((parse_time(ended["time"]) - started).total_seconds()) <= 1


@plays(oom_killed)
def test_oom_kill(outcome: Any) -> None:
    record, terminated = outcome["record"], outcome["terminated"]
    assert terminated["exitCode"] == 137
    if terminated.get("reason") != "OOMKilled":
        # A nested runtime (kind) does not always learn of the kernel's OOM kill: the pod then
        # says exit 137 (Error), and so must the record; the host cluster proves the OOM path.
        ended = entry(record, "ContainerTerminated", "app")
        assert (ended["exitCode"], ended.get("reason")) == (137, terminated.get("reason"))
        assert not entries(record, "OOMKilled")
        return
    killed = entry(record, "OOMKilled", "app")
    assert killed["exitCode"] == 137
    assert killed.get("reason") == "OOMKilled"
    assert record["status"]["outcome"] == "OOMKilled"


@plays(unschedulable)
def test_unschedulable_pod(outcome: Any) -> None:
    status = outcome["status"]
    failed_scheduling = entry(outcome, "FailedScheduling")
    assert (failed_scheduling["source"], failed_scheduling["reason"]) == (
        "event",
        "FailedScheduling",
    )
    # The scheduler's own message: no node fits, and this pod's node selector is why.
    message = failed_scheduling["message"]
    assert re.match(r"0/\d+ nodes are available: ", message), message
    assert "didn't match Pod's node affinity/selector" in message, message
    summary = failed_scheduling["summary"]
    assert summary.startswith("Scheduling failed: 0/"), summary
    shown = summary.removeprefix("Scheduling failed: ").removesuffix("…[truncated]")
    assert message.startswith(shown), (summary, message)
    assert status["lastEvent"].startswith("Scheduling failed: 0/"), "what get -o wide shows"
    # The PodScheduled=False condition says the same.
    (condition,) = [
        e for e in entries(outcome, "ConditionChanged") if "PodScheduled" in e["summary"]
    ]
    assert condition["summary"] == "Condition PodScheduled is False (Unschedulable)"
    assert "didn't match Pod's node affinity/selector" in condition["message"]
    # In order, from the pod's creation; the scheduler tries at once (whole seconds, a busy node).
    order = [
        index_of(outcome, "Created"),
        index_of(outcome, "FailedScheduling"),
    ]
    assert order == sorted(order), describe(outcome)
    assert_causal_order(outcome)
    created = parse_time(status["times"]["created"])
    tried = parse_time(failed_scheduling["time"])
    assert 0 <= (tried - created).total_seconds() <= 5, (created, tried)
    assert abs((parse_time(condition["time"]) - tried).total_seconds()) <= 1
    # Still waiting: no node, no outcome, nothing the operator would label it with.
    assert status["phase"] == "Pending"
    assert not entries(outcome, "Scheduled")
    assert "nodeName" not in status and "outcome" not in status
    labels = outcome["metadata"].get("labels") or {}
    assert "podtrail.io/node" not in labels and "podtrail.io/outcome" not in labels


@plays(image_pull_fails)
def test_image_that_cannot_be_pulled(outcome: Any) -> None:
    assert entries(outcome, "ImagePullFailed", "app")
    pulls = entries(outcome, "ImagePulling", "app") + entries(outcome, "BackOff", "app")
    assert any("127.0.0.1:5999/none:1" in e["summary"] + e.get("message", "") for e in pulls)


@plays(init_retried)
def test_init_containers_in_order_one_retried(outcome: Any) -> None:
    started = {
        e["container"]: parse_time(e["time"])
        for e in entries(outcome, "ContainerStarted")
        if e.get("container") in {"first", "flaky", "app"}
    }
    assert started["first"] <= started["flaky"] <= started["app"]
    assert_causal_order(outcome)
    first_end = entry(outcome, "ContainerTerminated", "first")
    assert first_end["exitCode"] == 0
    flaky_ends = [e.get("exitCode") for e in entries(outcome, "ContainerTerminated", "flaky")]
    # The failed run's exit 1 is there when the kubelet wrote it: a busy node's status manager
    # may write only the retry's (seen on the local cluster under load). The retry itself always
    # shows: the restart count, in the same status as the app's start.
    assert flaky_ends in ([1, 0], [0]), flaky_ends
    (flaky,) = [c for c in outcome["status"]["containers"] if c["name"] == "flaky"]
    assert flaky["restartCount"] == 1
    assert entry(outcome, "ContainerRestarted", "flaky").get("count", 1) == 1
    assert outcome["status"]["summary"]["init"] == "2/2"


@plays(native_sidecar)
def test_native_sidecar_started_and_ready(outcome: Any) -> None:
    started = entry(outcome, "SidecarStarted", "proxy")
    ready = entry(outcome, "SidecarReady", "proxy")
    app = entry(outcome, "ContainerStarted", "app")
    # Kubernetes keeps whole seconds; a time only the operator saw has a fraction: allow 1 s.
    # The kubelet starts the app once the sidecar has *started*; its readiness probe does not
    # gate the app, so the sidecar may turn ready after the app started.
    slack = timedelta(seconds=1)
    assert parse_time(started["time"]) <= parse_time(app["time"])
    assert parse_time(started["time"]) <= parse_time(ready["time"]) + slack
    kinds = {c["name"]: c["kind"] for c in outcome["status"]["containers"]}
    assert kinds == {"proxy": "sidecar", "app": "app"}
    assert outcome["status"]["summary"]["init"] == "1/1", "a started sidecar is done"
    assert_causal_order(outcome)
    # Its time is the kubelet's status sync, which may come after the first start (docs/facts.md).
    entry(outcome, "SandboxReady")


@plays(probes)
def test_probes_fail_and_pass(outcome: Any) -> None:
    readiness = entry(outcome, "ProbeFailed", "sad")
    assert readiness["probe"] == "readiness"
    assert readiness["count"] >= 3
    assert outcome["status"]["probeFailures"]["readiness"] >= 3
    assert outcome["status"]["probeFailures"]["liveness"] >= 2
    assert entry(outcome, "ProbeFailed", "dying")["probe"] == "liveness"
    restarted = entry(outcome, "ContainerRestarted", "dying")
    # Every restart counted once, as the pod counts them (one status: the same moment).
    (dying,) = [c for c in outcome["status"]["containers"] if c["name"] == "dying"]
    restarts = dying["restartCount"]
    assert restarted.get("count", 1) == restarts >= 1
    # A liveness kill: the shell ignores TERM, the kubelet KILLs it after the 1 s grace. The
    # previous run is named when the status that counted the restart held it: a busy kubelet
    # can count the restart before it reports the last state (a CI run saw that).
    prefix = f"Container dying restarted (restart count {restarts}"
    assert restarted["summary"] in (f"{prefix})", f"{prefix}; previous run exit 137 (Error))")
    if "previous run" in restarted["summary"]:
        assert (restarted["exitCode"], restarted["signal"]) == (137, "KILL")
    killed = entry(outcome, "LivenessRestart", "dying")
    assert killed["summary"].endswith("failed liveness probe, will be restarted")
    assert parse_time(entries(outcome, "LivenessRestart", "dying")[0]["time"]) <= parse_time(
        restarted["time"]
    )
    assert entries(outcome, "StartupProbePassed", "web")
    assert not entries(outcome, "ContainerReady", "sad")


@plays(readiness_lost)
def test_readiness_lost_when_the_probe_fails(outcome: Any) -> None:
    ready = entry(outcome, "ContainerReady", "flappy")
    not_ready = entry(outcome, "ContainerNotReady", "flappy")
    # The kubelet's times: the ContainersReady condition's transitions, which they agree with.
    turned = [
        (e["summary"].split()[3], e["time"])
        for e in entries(outcome, "ConditionChanged")
        if e["summary"].startswith("Condition ContainersReady is ")
    ]
    assert turned == [("True", ready["time"]), ("False", not_ready["time"])], describe(outcome)
    assert (ready["source"], not_ready["source"]) == ("inferred", "inferred")
    assert not_ready["summary"] == "Container flappy not ready"
    assert outcome["status"]["summary"]["ready"] == "0/1"
    order = [
        index_of(outcome, "ContainerStarted", container="flappy"),
        index_of(outcome, "ContainerReady", container="flappy"),
        index_of(outcome, "ContainerNotReady", container="flappy"),
    ]
    assert order == sorted(order), describe(outcome)
    assert_causal_order(outcome)
    # The file goes 15 s after the start; the probe, every second, fails (once is enough) within
    # a second of it: 15 to 17 s in whole seconds, and a busy node's slower probes.
    started = parse_time(entry(outcome, "ContainerStarted", "flappy")["time"])
    lost = (parse_time(not_ready["time"]) - started).total_seconds()
    assert 15 <= lost <= 20, lost


@plays(hook_failures)
def test_poststart_hook_failure(outcome: Any) -> None:
    failure = entry(outcome, "PostStartHookFailed", "app")
    assert failure["source"] == "event"
