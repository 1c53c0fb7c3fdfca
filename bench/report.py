"""The benchmark's table (markdown), its JSON, and the plot of lag over time."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench import deployment

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


Get = Callable[[dict[str, Any]], float | None]
PerConsumer = Callable[[dict[str, Any], str], float | None]


class _Table:
    """The rows so far: a figure per consumer with the two ratios, or a note."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def add(
        self,
        where: str,
        figure: str,
        items: list[dict[str, Any]],
        get: PerConsumer,
        fmt: str = "{:.2f}",
        consumers: tuple[str, ...] = CONSUMERS,
    ) -> None:
        """A figure of each consumer in `consumers` ('-' for the others), then the ratios."""
        cols = {c: [get(i, c) for i in items] if c in consumers else [] for c in CONSUMERS}
        self.rows.append(
            [
                where,
                figure,
                *(spread(cols[c], fmt) if c in consumers else "-" for c in CONSUMERS),
                ratio(cols["operator"], cols["raw watch"]),
                ratio(cols["operator"], cols["kube-state-metrics"]),
            ]
        )

    def note(self, where: str, figure: str, text: str, blank: str = "") -> None:
        """A row whose text stands in the operator's column, `blank` in the others."""
        self.rows.append([where, figure, text, blank, blank, blank, blank])


def _at(*path: str) -> Get:
    """Get the figure at `path` in an item."""
    return lambda item: _dig(item, *path)


def _each(head: str, *tail: str) -> PerConsumer:
    """Get a consumer's figure at item[head][consumer][tail...]."""
    return lambda item, consumer: _dig(item, head, consumer, *tail)


def _lag_of(q: str) -> PerConsumer:
    """Get a consumer's lag percentile `q` in ms."""
    return lambda item, consumer: _lag_ms(_dig(item, "lag", consumer, q))


def _over(items: list[dict[str, Any]], fmt: str, *gets: Get) -> str:
    """The spread of each figure over the repeats, with ' / ' between them."""
    return " / ".join(spread([get(i) for i in items], fmt) for get in gets)


def rows(results: dict[str, Any]) -> list[list[str]]:
    """The table: one row per figure, columns per consumer, then the two ratios."""
    table = _Table()
    for (size, rate), items in sorted(_group(results["windows"], "size", "rate").items()):
        _load_rows(table, f"{size} pods, {rate:g}/s", items)
        _write_rows(table, f"{size} pods, {rate:g}/s", items)
        _api_server_rows(table, f"{size} pods, {rate:g}/s", items)
    # Saved before the bounds were kept with the results: the manifest as it is now.
    bounds = results.get("deployment") or deployment.read()
    for (size,), items in sorted(_group(results["starts"], "size").items()):
        _start_rows(table, f"{size} pods", items)
        if bounds:
            _bounds_rows(table, f"{size} pods", items, bounds)
    for (size,), items in sorted(_group(results["catchups"], "size").items()):
        _catchup_rows(table, f"{size} pods", items)
    worst = results.get("worst_case_record")
    if worst:
        table.note(
            "worst case",
            f"record of a pod with {worst['probe_failures']} probe failures and "
            f"{worst['restarts']} restarts, KiB",
            f"{worst['size_kib']:.1f} (status {worst['status_kib']:.1f}); "
            f"{worst['timeline_entries']} entries, {worst['timeline_dropped']} dropped",
        )
    return table.rows


def _load_rows(table: _Table, where: str, items: list[dict[str, Any]]) -> None:
    """A window's load achieved, lag and CPU."""
    table.note(
        where,
        f"load achieved, transitions/s ({len(items)} runs)",
        _over(items, "{:.0f}", _at("achieved_rate"))
        + f"; machine busy {_over(items, '{:.0f}', lambda i: 100 * i['machine_busy'])} %",
    )
    for q in ("p50", "p95", "p99", "max"):
        table.add(
            where,
            f"lag {q}, ms",
            items,
            _lag_of(q),
            "{:.0f}",
            ("operator", "raw watch"),
        )
    table.add(where, "CPU s per 1,000 transitions", items, _each("cpu_per_1000"))


def _write_rows(table: _Table, where: str, items: list[dict[str, Any]]) -> None:
    """A window's record writes, facts seen and the API server's share."""
    table.add(
        where,
        "status writes per record written (mean)",
        items,
        lambda i, c: _dig(i, "status_writes_per_record", "mean"),
        consumers=("operator",),
    )
    table.add(
        where,
        "record writes per 1,000 transitions (API server)",
        items,
        lambda i, c: i.get("record_writes_per_1000"),
        "{:.0f}",
        ("operator",),
    )
    table.note(
        where,
        "writes < 1 window apart / without a new fact",
        _over(items, "{:.0f}", _at("writes_closer_than_window"), _at("writes_without_new_fact")),
        blank="-",
    )
    table.note(
        where,
        "facts not seen in the record / expected",
        _over(items, "{:.0f}", _at("facts_missing"), _at("facts_expected")),
    )
    latency = "apiserver_mean_latency_s"
    table.note(
        where,
        "API server mean latency, ms: record status PUT / pod status PATCH",
        _over(
            items,
            "{:.0f}",
            lambda i: _ms(_dig(i, latency, "PUT podlifecyclerecords/status")),
            lambda i: _ms(_dig(i, latency, "PATCH pods/status")),
        ),
    )
    write_lag = ("operator_metrics", "write_lag")
    table.note(
        where,
        "operator's own write lag (podtrail_write_lag_seconds) p50 / p99 bucket, s",
        _over(items, "{:g}", _at(*write_lag, "p50"), _at(*write_lag, "p99")),
    )
    verbs = _merge_requests(i["record_requests"] for i in items)
    table.note(where, "API requests on records (1st run)", verbs)


def _api_server_rows(table: _Table, where: str, items: list[dict[str, Any]]) -> None:
    """What the window cost the API server and etcd, and the record bytes they were sent."""
    for name in ("kube-apiserver", "etcd"):
        table.note(
            where,
            f"{name} CPU s per 1,000 transitions (serving all its clients)",
            spread(_dig(i, "control_plane_cpu_per_1000", name) for i in items),
        )
    idle = [
        spread(
            [_percent_of_core(_dig(i, "control_plane_idle_cores", name)) for i in items], "{:.1f}"
        )
        for name in ("kube-apiserver", "etcd")
    ]
    table.note(
        where,
        "kube-apiserver / etcd CPU without load, % of a core (in the figures above too)",
        " / ".join(idle),
    )
    table.add(
        where,
        "record status bytes sent per transition (API server's request body sizes)",
        items,
        lambda i, c: i.get("record_status_bytes_per_transition"),
        "{:.0f}",
        ("operator",),
    )
    table.add(
        where,
        "record status PUT, mean body, KiB",
        items,
        lambda i, c: _kib(i.get("record_status_put_mean_bytes")),
        "{:.1f}",
        ("operator",),
    )


def _start_rows(table: _Table, where: str, items: list[dict[str, Any]]) -> None:
    """The consumers' start and memory at one size."""
    events = items[0].get("events_present")
    table.add(
        where,
        f"start to all pods held, s ({events} Events present)",
        items,
        _each("start", "seconds"),
        "{:.1f}",
    )
    table.add(where, "start CPU, ms per pod", items, _each("start", "cpu_ms_per_pod"))
    for figure, kind in (("RSS steady, MiB", "steady_rss_mib"), ("RSS peak, MiB", "peak_rss_mib")):
        table.add(where, figure, items, _each("memory", kind), "{:.0f}")


def _bounds_rows(
    table: _Table, where: str, items: list[dict[str, Any]], bounds: dict[str, Any]
) -> None:
    """The operator's start and memory against the shipped Deployment's probe and limit."""
    probe = bounds.get("startup_probe") or {}
    budget = probe.get("budget_seconds")
    start = [_dig(i, "start", "operator", "seconds") for i in items]
    # An upper bound: /healthz answers once Kopf's start-up handler has returned, with leader
    # election (the default) once the election runs, without it once the records are loaded;
    # the pods are held later.
    table.note(
        where,
        "start to all pods held vs the Deployment's startup probe budget "
        f"({probe.get('periodSeconds', '-')} s × {probe.get('failureThreshold', '-')}; "
        "an upper bound)",
        f"{spread(start, '{:.1f}')} s of {_bound(budget, 's')} ({_percent(start, budget)})",
    )
    limit = bounds.get("memory_limit_mib")
    steady = [_dig(i, "memory", "operator", "steady_rss_mib") for i in items]
    peak = [_dig(i, "memory", "operator", "peak_rss_mib") for i in items]
    table.note(
        where,
        "RSS steady / peak vs the Deployment's memory limit",
        f"{spread(steady, '{:.0f}')} / {spread(peak, '{:.0f}')} MiB of {_bound(limit, 'MiB')} "
        f"({_percent(steady, limit)} / {_percent(peak, limit)})",
    )


def _bound(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:g} {unit}"


def _percent(values: list[float | None], bound: float | None) -> str:
    """The median of the repeats as a share of `bound`."""
    present = [v for v in values if v is not None]
    return f"{100 * statistics.median(present) / bound:.0f} %" if present and bound else "-"


def _catchup_rows(table: _Table, where: str, items: list[dict[str, Any]]) -> None:
    """The operator's restart catch-up at one size, and its records afterwards."""
    changes = _over(items, "{:.0f}", _at("changes_while_down"))
    table.add(
        where,
        f"restart catch-up, s ({changes} changes while down)",
        items,
        lambda i, c: i.get("seconds"),
        "{:.1f}",
        ("operator",),
    )
    table.add(
        where,
        "restart catch-up CPU, ms per pod",
        items,
        lambda i, c: i.get("cpu_ms_per_pod"),
        consumers=("operator",),
    )
    table.note(
        where,
        "duplicate timeline keys / same fact twice",
        _over(items, "{:.0f}", _at("duplicate_keys"), _at("duplicate_facts")),
    )
    size = ("record_size_kib",)
    table.note(
        where,
        "record size p50 / max, KiB (status alone)",
        _over(items, "{:.1f}", _at(*size, "p50"), _at(*size, "max"))
        + f" ({_over(items, '{:.1f}', _at(*size, 'status_p50'), _at(*size, 'status_max'))})",
    )


def _lag_ms(value: float | None) -> float | None:
    # A watch can deliver a change before the writer has read its own acknowledgement: 0.
    return None if value is None else max(0.0, 1000 * value)


def _ms(value: float | None) -> float | None:
    return None if value is None else 1000 * value


def _percent_of_core(cores: float | None) -> float | None:
    return None if cores is None else 100 * cores


def _kib(value: float | None) -> float | None:
    return None if value is None else value / 1024


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
        merged.setdefault("deployment", data.get("deployment"))
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
