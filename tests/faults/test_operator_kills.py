"""The operator SIGKILLed at 20 random moments while 36 pods go through their lives.

The plan (kill moments, down times, deletion delays) comes from one seed, printed and kept in
the figures; PODTRAIL_FAULT_SEED replays a run. The workload mixes init containers with a
retry, failing readiness probes, a container that restarts twice, exits on TERM, SIGKILL at the
grace deadline, OOM kills, plain failures, and pods deleted while the operator is down. The test
keeps its own pod watch, so it knows every pod's final status, deleted pods included.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.support import container, pod
from tests.faults.conftest import plays
from tests.faults.support import (
    FaultHarness,
    Obj,
    PodWatch,
    describe,
    duplicate_keys,
    entries,
    record_figures,
    status_of,
    timeline,
)
from tests.support.kube import wait_for

KILLS = 20
WAVE_GAP_SECONDS = 35
# After "podtrail started" the streams still list: a removal this soon after a start may be
# one the operator never saw, like a removal while it was down.
LISTING_MARGIN_SECONDS = 5.0

TRAP_TERM = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
IGNORE_TERM = "while true; do sleep 1; done"  # a PID-1 shell without a trap ignores TERM
FLAKY_INIT = "if [ -f /work/tried ]; then exit 0; fi; touch /work/tried; exit 1"
TWICE_FAILING = (
    'n=$(cat /work/n 2>/dev/null || echo 0); echo $((n + 1)) > /work/n; [ "$n" -ge 2 ] && exit 0; '
    "sleep 1; exit 1"
)
EAT_MEMORY = "head -c 200m /dev/zero | tail > /dev/null"
WORK = {"volumeMounts": [{"name": "work", "mountPath": "/work"}]}
WORK_VOLUME = {"volumes": [{"name": "work", "emptyDir": {}}]}


@dataclass(frozen=True)
class Kind:
    """One kind of pod in the workload: how many, its manifest, and whether the test deletes it."""

    name: str
    count: int
    build: Callable[[str], Obj]
    deleted: str = ""  # "": ends by itself; "running": deleted when running; "down": while down


KINDS = (
    Kind(
        "init",
        4,
        lambda n: pod(
            n,
            container("app", "sleep 4; exit 0", **WORK),
            init=[container("first", "sleep 1", **WORK), container("flaky", FLAKY_INIT, **WORK)],
            restart="OnFailure",
            **WORK_VOLUME,
        ),
    ),
    Kind(
        "probe",
        4,
        lambda n: pod(
            n,
            container(
                "app",
                "sleep 15; exit 0",
                readinessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1},
            ),
            restart="Never",
        ),
    ),
    Kind(
        "restarter",
        4,
        lambda n: pod(
            n, container("app", TWICE_FAILING, **WORK), restart="OnFailure", **WORK_VOLUME
        ),
    ),
    Kind("graceful", 6, lambda n: pod(n, container("app", TRAP_TERM), grace=10), "running"),
    Kind("stubborn", 6, lambda n: pod(n, container("app", IGNORE_TERM), grace=2), "running"),
    Kind(
        "oom",
        4,
        lambda n: pod(
            n,
            container(
                "app",
                EAT_MEMORY,
                resources={"limits": {"memory": "24Mi"}, "requests": {"memory": "24Mi"}},
            ),
            restart="Never",
        ),
    ),
    Kind("failer", 4, lambda n: pod(n, container("app", "sleep 3; exit 3"), restart="Never")),
    Kind("doomed", 4, lambda n: pod(n, container("app", "sleep 3600"), grace=1), "down"),
)


@dataclass
class Plan:
    """Every random choice of a run, drawn from the seed before anything starts."""

    seed: int
    up_seconds: list[float]
    down_seconds: list[float]
    doom_at: list[int]
    delete_after: dict[str, float]
    waves: dict[str, int]


def make_plan(seed: int) -> Plan:
    rng = random.Random(seed)
    up = [rng.uniform(1.5, 7.0) for _ in range(KILLS)]
    down = [rng.choice((0.0, rng.uniform(0.2, 4.0))) for _ in range(KILLS)]
    doomed = next(kind for kind in KINDS if kind.deleted == "down")
    doom_at = sorted(rng.sample(range(2, KILLS), doomed.count))
    delete_after: dict[str, float] = {}
    waves: dict[str, int] = {}
    for kind in KINDS:
        for index in range(kind.count):
            name = f"{kind.name}-{index}"
            waves[name] = 0 if kind.deleted == "down" else index % 3
            if kind.deleted == "running":
                delete_after[name] = rng.uniform(2.0, 25.0)
    return Plan(seed, up, down, doom_at, delete_after, waves)


@dataclass
class Run:
    """What happened: the kill windows and when the test deleted what."""

    windows: list[tuple[float, float]] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # each restart's "podtrail started"
    kills: int = 0
    deleted_while_down: list[str] = field(default_factory=list)


def kind_of(name: str) -> Kind:
    return next(kind for kind in KINDS if name.startswith(f"{kind.name}-"))


async def create_waves(h: FaultHarness, namespace: str, plan: Plan) -> None:
    for wave in range(3):
        if wave:
            await asyncio.sleep(WAVE_GAP_SECONDS)
        for name, when in plan.waves.items():
            if when == wave:
                await h.create_pod(namespace, kind_of(name).build(name))


async def delete_when_running(h: FaultHarness, namespace: str, name: str, delay: float) -> None:
    async def running() -> bool:
        found = await h.pod(namespace, name)
        return found is not None and status_of(found).get("phase") == "Running"

    await wait_for(running, timeout=240, what=f"{namespace}/{name} Running", interval=1)
    await asyncio.sleep(delay)
    await h.kube.delete_pod(namespace, name)


async def wait_removed(watch: PodWatch, name: str) -> None:
    async def removed() -> bool:
        return name in watch.removed_at

    await wait_for(removed, timeout=30, what=f"{name} removed from the API")


async def kill_repeatedly(
    h: FaultHarness, namespace: str, operator: Any, plan: Plan, watch: PodWatch, run: Run
) -> None:
    doomed = iter(sorted(n for n in plan.waves if kind_of(n).deleted == "down"))
    for index in range(KILLS):
        await asyncio.sleep(plan.up_seconds[index])
        killed_at = time.monotonic()
        await operator.kill()
        run.kills += 1
        if index in plan.doom_at:
            name = next(doomed)
            await h.kube.delete_pod(namespace, name, grace=0)
            await wait_removed(watch, name)
            run.deleted_while_down.append(name)
        await asyncio.sleep(plan.down_seconds[index])
        await operator.start()
        run.starts.append(time.monotonic())
        run.windows.append((killed_at, run.starts[-1] + LISTING_MARGIN_SECONDS))


def ended(name: str, watch: PodWatch) -> bool:
    if name in watch.removed_at:
        return True
    last = watch.last.get(name)
    return last is not None and status_of(last).get("phase") in ("Succeeded", "Failed")


def container_statuses(final: Obj) -> list[Obj]:
    status = status_of(final)
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )


def app_ends(final: Obj) -> list[Obj]:
    return [
        (s.get("state") or {}).get("terminated") or {}
        for s in status_of(final).get("containerStatuses") or []
    ]


def true_outcome(final: Obj, deleted: bool) -> str:
    """The outcome the pod's final status says (deleted pods: the kubelet's exit codes)."""
    ends = app_ends(final)
    if any(end.get("reason") == "OOMKilled" for end in ends):
        return "OOMKilled"
    if deleted:
        if any(end.get("exitCode") == 137 for end in ends):
            return "KilledAfterGrace"
        return "GracefulShutdown"
    return "Succeeded" if status_of(final).get("phase") == "Succeeded" else "Failed"


def acceptable(name: str, watch: PodWatch, run: Run) -> set[str]:
    """Outcomes that tell the truth about this pod, given when the operator was down."""
    final = watch.last[name]
    if kind_of(name).deleted == "down":
        return {"DeletedUnobserved"}
    deleted = name in watch.removed_at
    allowed = {true_outcome(final, deleted)}
    if deleted:
        removed = watch.removed_at[name]
        if any(start <= removed <= end for start, end in run.windows):
            allowed.add("DeletedUnobserved")
    return allowed


def removal_moments(watch: PodWatch, run: Run) -> dict[str, int]:
    """Deleted pods by when their removal came: operator down, just started, or up."""
    counts = {"down": 0, "listing": 0, "up": 0}
    for name, removed in watch.removed_at.items():
        if any(start <= removed <= began for (start, _), began in zip(run.windows, run.starts)):
            counts["down"] += 1
        elif any(start <= removed <= end for start, end in run.windows):
            counts["listing"] += 1
        else:
            counts["up"] += 1
    return counts


def disagreements(name: str, record: Obj, final: Obj) -> list[str]:
    """Where the record contradicts the pod's final status (restart counts, exit codes)."""
    if status_of(record).get("outcome") == "DeletedUnobserved":
        return []  # the operator could not see the end: nothing to compare
    found: list[str] = []
    kept = {c.get("name"): c for c in status_of(record).get("containers") or []}
    for state in container_statuses(final):
        mine = kept.get(state.get("name"))
        if mine is None:
            found.append(f"{name}: no container {state.get('name')} in the record")
            continue
        if (mine.get("restartCount") or 0) != (state.get("restartCount") or 0):
            found.append(
                f"{name}/{state.get('name')}: restarts {mine.get('restartCount')} in the record, "
                f"{state.get('restartCount')} in the pod"
            )
        end = (state.get("state") or {}).get("terminated")
        if end and mine.get("lastExitCode") != end.get("exitCode"):
            found.append(
                f"{name}/{state.get('name')}: exit code {mine.get('lastExitCode')} in the record, "
                f"{end.get('exitCode')} in the pod"
            )
    return found


def content_missing(name: str, record: Obj) -> list[str]:
    """Facts each kind must leave in its record, whatever the kills did."""
    kind = kind_of(name).name
    need = {
        "probe": [("ProbeFailed", "app")],
        "init": [("ContainerStarted", "app")],
        "restarter": [("ContainerRestarted", "app")],
    }.get(kind, [])
    return [f"{name}: no {t} entry for {c}" for t, c in need if not entries(record, t, c)]


async def settled_records(
    h: FaultHarness, namespace: str, watch: PodWatch, run: Run, timeout: float
) -> tuple[dict[str, Obj], dict[str, tuple[str | None, set[str]]]]:
    """Poll until every record tells its pod's end (or time runs out); the last poll's verdicts."""
    deadline = time.monotonic() + timeout
    while True:
        records = {r["metadata"]["name"]: r for r in await h.records(namespace)}
        wrong = {}
        for name in watch.last:
            allowed = acceptable(name, watch, run)
            outcome = status_of(records.get(name)).get("outcome")
            if outcome not in allowed:
                wrong[name] = (outcome, allowed)
        if not wrong or time.monotonic() > deadline:
            return records, wrong
        await asyncio.sleep(2)


async def operator_kills(h: FaultHarness) -> dict[str, Any]:
    seed = int(os.environ.get("PODTRAIL_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    print(f"\noperator kills: seed {seed} (PODTRAIL_FAULT_SEED={seed} replays the plan)")
    plan = make_plan(seed)
    namespace = await h.namespace("kills")
    watch = PodWatch(h, namespace)
    watch.start()
    # Without leader election: a SIGKILLed leader's successor waits out the lease (15 s), which
    # the failover tests cover; here the restarts themselves are under test.
    operator = h.operator("kills", [namespace], lease=False)
    await operator.start()
    run = Run()
    started = time.monotonic()
    try:
        deletions = [
            delete_when_running(h, namespace, name, delay)
            for name, delay in plan.delete_after.items()
        ]
        await asyncio.gather(
            create_waves(h, namespace, plan),
            kill_repeatedly(h, namespace, operator, plan, watch, run),
            *deletions,
        )

        async def all_ended() -> bool:
            return len(watch.last) == len(plan.waves) and all(ended(n, watch) for n in plan.waves)

        await wait_for(all_ended, timeout=240, what="every pod to end", interval=1)
        records, wrong = await settled_records(h, namespace, watch, run, timeout=120)
    finally:
        await watch.stop()
    return {
        "plan": plan,
        "run": run,
        "records": records,
        "wrong": wrong,
        "finals": dict(watch.last),
        "removals": removal_moments(watch, run),
        "seconds": time.monotonic() - started,
        "operator_log": str(operator.log_path),
    }


@plays(operator_kills)
def test_kills_lose_no_outcome_and_add_no_duplicate(outcome: dict[str, Any]) -> None:
    records: dict[str, Obj] = outcome["records"]
    finals: dict[str, Obj] = outcome["finals"]
    run: Run = outcome["run"]
    duplicates = {name: duplicate_keys(r) for name, r in records.items() if duplicate_keys(r)}
    disagreeing = [d for name, r in records.items() for d in disagreements(name, r, finals[name])]
    missing = [m for name, r in records.items() for m in content_missing(name, r)]
    outcomes: dict[str, int] = {}
    for record in records.values():
        key = str(status_of(record).get("outcome"))
        outcomes[key] = outcomes.get(key, 0) + 1
    record_figures(
        "1. operator SIGKILLed",
        {
            "seed": outcome["plan"].seed,
            "kills": run.kills,
            "pods": len(finals),
            "records": len(records),
            "facts (timeline entries, all records)": sum(
                len(timeline(r)) for r in records.values()
            ),
            "pods force-deleted while the operator was down": len(run.deleted_while_down),
            "deleted pods removed while the operator was down": outcome["removals"]["down"],
            f"... within {LISTING_MARGIN_SECONDS:g} s after a start": outcome["removals"][
                "listing"
            ],
            "... while it was up": outcome["removals"]["up"],
            "terminal outcomes lost or wrong": len(outcome["wrong"]),
            "duplicate timeline keys": sum(len(keys) for keys in duplicates.values()),
            "records contradicting the pod (exit codes, restarts)": len(disagreeing),
            "outcomes": outcomes,
            "scenario seconds": round(outcome["seconds"], 1),
        },
    )
    assert run.kills == KILLS
    assert len(records) == len(finals), f"records missing: {sorted(set(finals) - set(records))}"
    assert not outcome["wrong"], "\n".join(
        f"{name}: outcome {got!r}, want one of {sorted(allowed)}\n{describe(records.get(name))}"
        for name, (got, allowed) in sorted(outcome["wrong"].items())
    )
    assert not duplicates, f"duplicate timeline keys: {duplicates}"
    assert not disagreeing, "\n".join(disagreeing)
    assert not missing, "\n".join(missing)
    for name in run.deleted_while_down:
        assert entries(records[name], "DeletedUnobserved"), describe(records[name])
