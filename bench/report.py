"""The benchmark's table (markdown), its JSON, and the plot of lag over time."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

CONSUMERS = ("operator", "raw watch", "kube-state-metrics")
Values = list[float]


def spread(values: Iterable[float | None], fmt: str = "{:.2f}") -> str:
    """Median of the repeats, with min-max when they differ ('-' when none)."""
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    mid = statistics.median(present)
    text = fmt.format(mid)
    low, high = min(present), max(present)
    if len(present) > 1 and fmt.format(low) != fmt.format(high):
        text += f" ({fmt.format(low)}-{fmt.format(high)})"
    return text


def ratio(numerator: Iterable[float | None], denominator: Iterable[float | None]) -> str:
    """Ratio of the medians, as 'N.N×'."""
    top = [v for v in numerator if v is not None]
    bottom = [v for v in denominator if v is not None]
    if not top or not bottom or statistics.median(bottom) < 1e-3:
        return "-"
    return f"{statistics.median(top) / statistics.median(bottom):.1f}×"


def _group(items: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        grouped[tuple(item[k] for k in keys)].append(item)
    return dict(grouped)


def _dig(item: dict[str, Any], *path: str) -> Any:
    value: Any = item
    for step in path:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def rows(results: dict[str, Any]) -> list[list[str]]:
    """The table: one row per figure, columns per consumer, then the two ratios."""
    table: list[list[str]] = []

    def add(
        where: str,
        figure: str,
        items: list[dict[str, Any]],
        get: Callable[[dict[str, Any], str], float | None],
        fmt: str = "{:.2f}",
        consumers: tuple[str, ...] = CONSUMERS,
    ) -> None:
        cols = {c: [get(i, c) for i in items] if c in consumers else [] for c in CONSUMERS}
        table.append(
            [
                where,
                figure,
                *(spread(cols[c], fmt) if c in consumers else "-" for c in CONSUMERS),
                ratio(cols["operator"], cols["raw watch"]),
                ratio(cols["operator"], cols["kube-state-metrics"]),
            ]
        )

    def note(where: str, figure: str, text: str) -> None:
        table.append([where, figure, text, "", "", "", ""])

    windows = _group(results["windows"], "size", "rate")
    for (size, rate), items in sorted(windows.items()):
        where = f"{size} pods, {rate:g}/s"
        n = len(items)
        note(
            where,
            f"load achieved, transitions/s ({n} runs)",
            spread([i["achieved_rate"] for i in items], "{:.0f}")
            + f"; machine busy {spread([100 * i['machine_busy'] for i in items], '{:.0f}')} %",
        )
        for q in ("p50", "p95", "p99", "max"):
            add(
                where,
                f"lag {q}, ms",
                items,
                lambda i, c, q=q: (
                    None if c == "kube-state-metrics" else _lag_ms(_dig(i, "lag", c, q))
                ),
                "{:.0f}",
                ("operator", "raw watch"),
            )
        add(where, "CPU s per 1,000 transitions", items, lambda i, c: _dig(i, "cpu_per_1000", c))
        add(
            where,
            "status writes per record written (mean)",
            items,
            lambda i, c: _dig(i, "status_writes_per_record", "mean"),
            consumers=("operator",),
        )
        add(
            where,
            "record writes per 1,000 transitions (API server)",
            items,
            lambda i, c: i.get("record_writes_per_1000"),
            "{:.0f}",
            ("operator",),
        )
        add(
            where,
            "writes < 1 window apart / without a new fact",
            items,
            lambda i, c: None,
            consumers=(),
        )
        table[-1][2] = (
            spread([i["writes_closer_than_window"] for i in items], "{:.0f}")
            + " / "
            + spread([i["writes_without_new_fact"] for i in items], "{:.0f}")
        )
        note(
            where,
            "facts not seen in the record / expected",
            spread([i["facts_missing"] for i in items], "{:.0f}")
            + " / "
            + spread([i["facts_expected"] for i in items], "{:.0f}"),
        )
        lat = [i.get("apiserver_mean_latency_s") or {} for i in items]
        note(
            where,
            "API server mean latency, ms: record status PUT / pod status PATCH",
            spread([_ms(x.get("PUT podlifecyclerecords/status")) for x in lat], "{:.0f}")
            + " / "
            + spread([_ms(x.get("PATCH pods/status")) for x in lat], "{:.0f}"),
        )
        note(
            where,
            "operator's own write lag (podtrail_write_lag_seconds) p50 / p99 bucket, s",
            spread([_dig(i, "operator_metrics", "write_lag", "p50") for i in items], "{:g}")
            + " / "
            + spread([_dig(i, "operator_metrics", "write_lag", "p99") for i in items], "{:g}"),
        )
        verbs = _merge_requests(i["record_requests"] for i in items)
        note(where, "API requests on records (1st run)", verbs)

    starts = _group(results["starts"], "size")
    for (size,), items in sorted(starts.items()):
        where = f"{size} pods"
        events = items[0].get("events_present")
        add(
            where,
            f"start to all pods held, s ({events} Events present)",
            items,
            lambda i, c: _dig(i, "start", c, "seconds"),
            "{:.1f}",
        )
        add(
            where,
            "start CPU, ms per pod",
            items,
            lambda i, c: _dig(i, "start", c, "cpu_ms_per_pod"),
        )
        add(
            where,
            "RSS steady, MiB",
            items,
            lambda i, c: _dig(i, "memory", c, "steady_rss_mib"),
            "{:.0f}",
        )
        add(
            where,
            "RSS peak, MiB",
            items,
            lambda i, c: _dig(i, "memory", c, "peak_rss_mib"),
            "{:.0f}",
        )
    catchups = _group(results["catchups"], "size")
    for (size,), items in sorted(catchups.items()):
        where = f"{size} pods"
        changes = spread([i["changes_while_down"] for i in items], "{:.0f}")
        add(
            where,
            f"restart catch-up, s ({changes} changes while down)",
            items,
            lambda i, c: i.get("seconds"),
            "{:.1f}",
            ("operator",),
        )
        add(
            where,
            "restart catch-up CPU, ms per pod",
            items,
            lambda i, c: i.get("cpu_ms_per_pod"),
            consumers=("operator",),
        )
        note(
            where,
            "duplicate timeline keys / same fact twice",
            spread([i["duplicate_keys"] for i in items], "{:.0f}")
            + " / "
            + spread([i["duplicate_facts"] for i in items], "{:.0f}"),
        )
        note(
            where,
            "record size p50 / max, KiB (status alone)",
            spread([_dig(i, "record_size_kib", "p50") for i in items], "{:.1f}")
            + " / "
            + spread([_dig(i, "record_size_kib", "max") for i in items], "{:.1f}")
            + " ("
            + spread([_dig(i, "record_size_kib", "status_p50") for i in items], "{:.1f}")
            + " / "
            + spread([_dig(i, "record_size_kib", "status_max") for i in items], "{:.1f}")
            + ")",
        )
    worst = results.get("worst_case_record")
    if worst:
        note(
            "worst case",
            f"record of a pod with {worst['probe_failures']} probe failures and "
            f"{worst['restarts']} restarts, KiB",
            f"{worst['size_kib']:.1f} (status {worst['status_kib']:.1f}); "
            f"{worst['timeline_entries']} entries, {worst['timeline_dropped']} dropped",
        )
    return table


def _lag_ms(value: float | None) -> float | None:
    # A watch can deliver a change before the writer has read its own acknowledgement: 0.
    return None if value is None else max(0.0, 1000 * value)


def _ms(value: float | None) -> float | None:
    return None if value is None else 1000 * value


def _merge_requests(counts: Iterable[dict[str, int]]) -> str:
    first = next(iter(counts), {})
    return ", ".join(f"{k.replace('podlifecyclerecords', 'plr')} {v}" for k, v in first.items())


HEADER = ["where", "figure", *CONSUMERS, "operator / raw watch", "operator / kube-state-metrics"]


def markdown(table: list[list[str]]) -> str:
    """The table as markdown."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path) -> tuple[str, Path, Path | None]:
    """Print-ready table; writes out/bench/<mode>-<run>.json (+ .md, + lag PNG)."""
    out.mkdir(parents=True, exist_ok=True)
    table = rows(results)
    text = markdown(table)
    stem = f"{results['options']['mode']}-{results['run_id']}"
    results = {**results, "table": {"header": HEADER, "rows": table}}
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    (out / f"{stem}.md").write_text(text + "\n")
    plot = plot_lag(results, out / f"{stem}-lag.png")
    return text, json_path, plot


def plot_lag(results: dict[str, Any], path: Path) -> Path | None:
    """Lag over time, operator and raw watch, for the largest run."""
    series = results.get("lag_series") or {}
    if not series:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    title, repeats = next(iter(series.items()))
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    colors = {"operator": "tab:blue", "raw watch": "tab:gray"}
    for index, run in enumerate(repeats, start=1):
        for consumer, points in run.items():
            if not points:
                continue
            xs = [p[0] for p in points]
            ys = [max(0.1, 1000 * p[1]) for p in points]
            ax.scatter(
                xs,
                ys,
                s=4,
                alpha=0.5,
                color=colors.get(consumer),
                marker="o" if index == 1 else "x",
                label=f"{consumer} (run {index})",
            )
    size, rate = title.split(" pods, ")
    missing = [
        w["facts_missing"]
        for w in results.get("windows") or []
        if w["size"] == int(size) and f"{w['rate']:g}/s" == rate
    ]
    if any(missing):
        ax.text(
            0.01,
            0.98,
            "not shown: facts not in their record 5 s after the window "
            + "("
            + ", ".join(str(m) for m in missing)
            + ")",
            transform=ax.transAxes,
            fontsize=8,
            va="top",
        )
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the window")
    ax.set_ylabel("lag, ms (log)")
    ax.set_title(f"podtrail lag: pod change → fact in the record ({title})")
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def merge(paths: list[Path], sizes: set[int] | None = None) -> dict[str, Any]:
    """Several saved runs as one (e.g. the 1,000-pod rows of one and the 5,000 of another)."""
    merged: dict[str, Any] = {"windows": [], "starts": [], "catchups": [], "lag_series": {}}
    for path in paths:
        data = json.loads(path.read_text())
        for part in ("windows", "starts", "catchups"):
            merged[part] += [i for i in data[part] if sizes is None or i["size"] in sizes]
        for title, series in (data.get("lag_series") or {}).items():
            if sizes is None or int(title.split()[0]) in sizes:
                merged["lag_series"][title] = series
        merged.setdefault("run_id", data["run_id"])
        merged.setdefault("options", data["options"])
        merged.setdefault("machine", data.get("machine"))
        if data.get("worst_case_record"):
            merged["worst_case_record"] = data["worst_case_record"]
    biggest = sorted(merged["lag_series"], key=lambda t: int(t.split()[0]), reverse=True)[:1]
    merged["lag_series"] = {t: merged["lag_series"][t] for t in biggest}
    return merged


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.report FILE.json... [--sizes 1000,5000] [--out DIR]`: table again."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--sizes", help="only these pod counts")
    parser.add_argument("--out", type=Path, help="also write the merged JSON, table and plot here")
    args = parser.parse_args(argv)
    sizes = {int(s) for s in args.sizes.split(",")} if args.sizes else None
    results = merge(args.files, sizes)
    if args.out:
        results["options"] = {**results["options"], "mode": "merged"}
        text, json_path, plot = write(results, args.out)
        print(text)
        print(f"\nresults: {json_path}" + (f"\nlag plot: {plot}" if plot else ""))
    else:
        print(markdown(rows(results)))


if __name__ == "__main__":
    main()
