"""`python -m bench [--quick|--full|--huge|--tiny] [...]`: run, print and save the table."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

from bench import harness, report, setup

REPO = Path(__file__).resolve().parent.parent
LOCAL_KUBECONFIG = "/var/lib/podtrail/cluster/kubeconfig"
LOCAL_KUBECTL = "/var/cache/podtrail/bin/kubernetes-v1.34.4/kubectl"

# mode: sizes, rates, seconds per window, repeats, restart load seconds, worst-case restarts
MODES = {
    "tiny": ([20], [10.0], 10.0, 1, 3.0, 0),
    "quick": ([300], [100.0], 30.0, 2, 8.0, 60),
    "full": ([1000, 5000], [20.0, 100.0, 300.0], 45.0, 2, 10.0, 150),
    # The largest cluster: its start, memory and catch-up (no worst-case record: its size does
    # not depend on the pod count, quick and full measure it).
    "huge": ([20000], [20.0], 30.0, 2, 10.0, 0),
}


def parse(argv: list[str]) -> harness.Options:
    """The options of a run, from the command line and the mode chosen."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    for name in MODES:
        mode.add_argument(f"--{name}", dest="mode", action="store_const", const=name)
    parser.set_defaults(mode="quick")
    parser.add_argument("--sizes", help="pod counts, comma-separated (overrides the mode)")
    parser.add_argument("--rates", help="transitions/s, comma-separated (overrides the mode)")
    parser.add_argument("--seconds", type=float, help="seconds of load per measured window")
    parser.add_argument("--repeats", type=int, help="times each figure is measured")
    parser.add_argument("--coalesce-seconds", type=float, default=1.0)
    parser.add_argument("--events-per-pod", type=int, default=2, help="past Events created per pod")
    parser.add_argument(
        "--profile", action="store_true", help="sample the operator with py-spy in each window"
    )
    parser.add_argument(
        "--operator-args",
        default="",
        help="extra operator options, e.g. '--write-concurrency 32' (to compare settings)",
    )
    parser.add_argument("--keep", action="store_true", help="leave kwok, nodes and pods in place")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or LOCAL_KUBECONFIG)
    parser.add_argument(
        "--kubectl",
        default=LOCAL_KUBECTL
        if Path(LOCAL_KUBECTL).exists()
        else shutil.which("kubectl") or "kubectl",
    )
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    parser.add_argument(
        "--variant",
        default="",
        help="run the operator with proposed changes applied (see bench/variants.py)",
    )
    parser.add_argument(
        "--worst-restarts",
        type=int,
        help="restarts of the worst-case record (with 3,000 probe failures); 0: none",
    )
    args = parser.parse_args(argv)
    sizes, rates, seconds, repeats, catchup, worst = MODES[args.mode]
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    return harness.Options(
        sizes=sizes,
        rates=[float(r) for r in args.rates.split(",")] if args.rates else rates,
        seconds=args.seconds or seconds,
        repeats=args.repeats or repeats,
        mode=args.mode,
        kubeconfig=args.kubeconfig,
        kubectl=args.kubectl,
        out=args.out,
        coalesce=args.coalesce_seconds,
        events_per_pod=args.events_per_pod,
        catchup_seconds=catchup,
        profile=args.profile,
        keep=args.keep,
        operator_args=args.operator_args.split(),
        variant=args.variant,
        worst_restarts=worst if args.worst_restarts is None else args.worst_restarts,
        namespaces=setup.namespaces_for(max(sizes)),
        nodes=setup.nodes_for(max(sizes)),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON and the plot."""
    options = parse(sys.argv[1:] if argv is None else argv)

    async def until_done_or_terminated() -> dict[str, object]:
        # SIGTERM cancels the run like Ctrl-C does, so its cleanup still removes the simulated
        # nodes and namespaces and stops kwok.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await harness.run(options)

    results = asyncio.run(until_done_or_terminated())
    text, json_path, plot = report.write(results, options.out)
    print(text)
    print(f"\nresults: {json_path}" + (f"\nlag plot: {plot}" if plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
