"""Charts of the bench results: one PNG next to each JSON file the runners write.

    python bench/chart.py bench/results/data_path-20250601T102030Z.json [more.json ...]
    python -m bench.chart bench/results/api_latency-*.json      (from the repository root)

Each ``X.json`` becomes ``X.png`` beside it (``--out`` names another file when one
JSON is given).  The kind of result is told from its shape:

* ``bench/data_path.py`` (``run_data_bench.sh``): upload (Content-Length, chunked),
  download and piped-upload throughput per target with the machine's limits as
  reference lines, all the machine limits, the server tree's memory during the piped
  upload, the server CPU per transfer, and the project's ratio goals;
* ``bench/api_latency.py`` (``run_api_bench.sh``): p50 / p95 latency and throughput
  per endpoint (list, show, create) and client count, with the p95 goals.

Bars of the first target carry its ratio to the second (Glint / Glance when the runners
wrote the file); the title names the run's date and the commit (the ``commit`` field the
benchmark scripts record since they do, else ``--commit``, else "commit unknown").  Rendering uses
matplotlib's Agg backend and needs no display; install it with
``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install -e '.[bench]'  (from the repository root, into this Python's env)"
DPI = 110
TARGET_COLOURS: dict[str, str] = {"glint": "#2f6db5", "glance": "#e07b24"}
OTHER_COLOURS: tuple[str, ...] = ("#4d9a4d", "#9467bd", "#8c564b", "#17becf")
GOOD, BAD, NEUTRAL = "#1e7b34", "#b3261e", "#555555"
LineStyle = Literal["-", "--", "-.", ":"]
LegendLoc = Literal["best", "upper left", "upper right"]
# data_path.py limit keys: (short label, line colour, line style)
LIMITS: dict[str, tuple[str, str, LineStyle]] = {
    "write_fsync": ("disk write + fsync", "#555555", ":"),
    "read_warm": ("disk read, page cache warm", "#2a9d8f", "-."),
    "read_cold": ("disk read, page cache dropped", "#7b2cbf", "--"),
    "md5": ("md5, 1 thread", "#999999", "-"),
    "sha512": ("sha512, 1 thread", "#999999", "-"),
    "hash1": ("md5 + sha512, 1 thread", "#999999", "-"),
    "hash2": ("md5 + sha512, 2 threads (hash limit)", "#b3261e", "--"),
}
MB_S = "MB/s (MB = 10$^6$ bytes)"
TIMES = "\u00d7"  # the multiplication sign of the ratio labels


class ChartError(Exception):
    """A JSON file that cannot be charted, or matplotlib missing."""


# --------------------------------------------------------------------- helpers


def load_matplotlib() -> None:
    """Select the Agg backend (no display) or explain how to install matplotlib."""
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        raise ChartError(
            f"matplotlib is not installed for {sys.executable}; {INSTALL_HINT}"
        ) from exc
    matplotlib.use("Agg")


def display_name(name: str) -> str:
    return name[:1].upper() + name[1:]


def target_colour(name: str, index: int) -> str:
    return TARGET_COLOURS.get(name.lower(), OTHER_COLOURS[index % len(OTHER_COLOURS)])


def number(value: Any) -> float | None:
    """A finite JSON number as float, else None (missing, null, a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def fmt(value: float, digits: int | None = None) -> str:
    """Thousands separators; digits by magnitude unless given."""
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def run_date(stamp: Any) -> str:
    if not isinstance(stamp, str):
        return "date unknown"
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    offset = moment.utcoffset()
    zone = "" if offset is None else " UTC" if not offset else moment.strftime(" %z")
    return moment.strftime("%Y-%m-%d %H:%M") + zone


def commit_text(doc: dict[str, Any], override: str | None) -> str:
    commit = doc.get("commit") or override
    return f"commit {commit}" if isinstance(commit, str) and commit else "commit unknown"


# --------------------------------------------------------------------- grouped bars


@dataclass
class Bar:
    """One bar: its value (None: not measured), the single runs (dots) and the label
    lines stacked above it besides the value, bottom to top, as (text, colour)."""

    value: float | None
    runs: list[float] = field(default_factory=list)
    labels: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RefLine:
    """A horizontal reference at `value` across the groups `groups` (indexes)."""

    value: float
    label: str
    colour: str
    style: LineStyle
    groups: tuple[int, ...]


SeriesBars = tuple[str, str, Sequence[Bar]]  # name, colour, one bar per group
# The single runs, drawn over their bar (the bar is their median).
_RUN_DOTS: dict[str, Any] = {
    "linestyle": "none",
    "marker": "o",
    "markersize": 3,
    "markerfacecolor": "white",
    "markeredgecolor": "black",
    "markeredgewidth": 0.6,
}
LABEL_BOX = {"boxstyle": "square,pad=0.08", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}


def grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    series: Sequence[SeriesBars],
    unit: str,
    *,
    digits: int | None = None,
    ratio_word: str = "",
    ratio_colour: Callable[[int, float], str] | None = None,
    lines: Sequence[RefLine] = (),
    legend_loc: LegendLoc = "best",
) -> None:
    """Bars per group, one per series (name, colour, bars), the value above every bar and,
    with two or more series, the first series' ratio to the second above its bars (bold;
    `ratio_colour(group, ratio)` may colour it, e.g. by a goal).  `lines` are drawn across
    their groups only and named in the legend."""
    count = len(series)
    width = 0.8 / max(count, 1)
    heights = [0.0, *(line.value for line in lines)]
    for _, _, bars in series:
        heights += [max([bar.value or 0.0, *bar.runs]) for bar in bars]
    top = max(heights) or 1.0
    for index, (name, colour, bars) in enumerate(series):
        offset = (index - (count - 1) / 2) * width
        legend_label: str | None = name  # on the first bar drawn
        for group, bar in enumerate(bars):
            x = group + offset
            if bar.value is None:
                ax.annotate(
                    "n/a",
                    (x, 0),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color=NEUTRAL,
                )
                continue
            ax.bar(x, bar.value, width * 0.92, color=colour, label=legend_label)
            legend_label = None
            if bar.runs:
                ax.plot(
                    [x] * len(bar.runs),
                    bar.runs,
                    **_RUN_DOTS,
                    zorder=3,
                )
            stack: list[tuple[str, str, str]] = [(fmt(bar.value, digits), "black", "normal")]
            if index == 0 and count >= 2:
                value = ratio(bar.value, series[1][2][group].value)
                if value is not None:
                    text = f"{value:.2f}{TIMES}" + (f" {ratio_word}" if ratio_word else "")
                    shade = ratio_colour(group, value) if ratio_colour else "black"
                    stack.append((text, shade, "bold"))
            stack += [(text, shade, "bold") for text, shade in bar.labels]
            base = max([bar.value, *bar.runs])
            for line_no, (text, shade, weight) in enumerate(stack):
                ax.annotate(
                    text,
                    (x, base),
                    xytext=(0, 3 + 10.5 * line_no),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color=shade,
                    fontweight=weight,
                    bbox=LABEL_BOX,
                    zorder=5,
                )
    named: set[str] = set()
    for line in lines:
        for group in line.groups:
            ax.hlines(
                line.value,
                group - 0.46,
                group + 0.46,
                colors=line.colour,
                linestyles=line.style,
                linewidth=1.6,
                zorder=4,
                label="_nolegend_" if line.label in named else line.label,
            )
            named.add(line.label)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=9)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(0, top * 1.38)
    ax.set_ylabel(unit)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}" if top >= 10 else f"{v:,.1f}")
    if ax.get_legend_handles_labels()[0]:
        title = None
        if count >= 2 and not ratio_word:
            title = f"bold: {series[0][0]} ÷ {series[1][0]}"
        ax.legend(loc=legend_loc, fontsize=8, title=title, title_fontsize=8, framealpha=0.9)


# --------------------------------------------------------------------- figure parts


def header(fig: Figure, title: str, subtitle: str) -> None:
    fig.suptitle(title, fontsize=15, fontweight="bold", y=0.985)
    fig.text(0.5, 0.947, subtitle, ha="center", fontsize=10, color=NEUTRAL)


def verdict(met: Any) -> tuple[str, str]:
    if met is True:
        return "✓ met", GOOD
    if met is False:
        return "✗ missed", BAD
    return "- n/a", NEUTRAL


def goal_rows(entries: list[tuple[Any, str, Any, str]]) -> list[tuple[str, str]]:
    """(met, what, value, target text) -> coloured footer lines."""
    rows = []
    for met, what, value, target in entries:
        word, colour = verdict(met)
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown = f"{value:,}" if isinstance(value, int) else fmt(value, 2)
        else:
            shown = "n/a"
        rows.append((f"{word}  {what}: {shown} ({target})", colour))
    return rows


def goals_text(
    fig: Figure, rect: tuple[float, float, float, float], rows: list[tuple[str, str]]
) -> None:
    """Lines of (text, colour), in two columns if more than four, in `rect` (figure
    fractions: left, bottom, width, height)."""
    ax = fig.add_axes(rect)
    ax.axis("off")
    per_column = -(-len(rows) // 2) if len(rows) > 4 else max(len(rows), 1)
    for index, (text, colour) in enumerate(rows):
        column, row = divmod(index, per_column)
        ax.text(
            0.5 * column,
            1 - row / per_column,
            text,
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            color=colour,
        )


# --------------------------------------------------------------------- data_path.py


def series_median(doc: Any) -> float | None:
    return number(doc.get("median_mb_s")) if isinstance(doc, dict) else None


def series_runs(doc: Any) -> list[float]:
    if not isinstance(doc, dict):
        return []
    return [v for v in (number(x) for x in doc.get("runs_mb_s") or []) if v is not None]


def series_extra_median(doc: Any, key: str) -> float | None:
    if not isinstance(doc, dict):
        return None
    values = [number(run.get(key)) for run in doc.get("runs") or [] if isinstance(run, dict)]
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def rss_mb(rss: Any, key: str) -> float | None:
    if not isinstance(rss, dict) or not rss.get("samples"):
        return None
    kib = number(rss.get(key))
    return None if kib is None else kib * 1024 / 1_000_000


def piped_mb_s(rss: Any) -> float | None:
    if not isinstance(rss, dict) or not rss.get("ok"):
        return None
    rate = ratio(number(rss.get("upload_bytes")), number(rss.get("upload_seconds")))
    return None if rate is None else rate / 1_000_000


def rss_target_mb(doc: dict[str, Any]) -> float | None:
    """The '< N' target of the 'Glint peak RSS, MB' ratio entry."""
    for entry in doc.get("ratios") or []:
        target = str(entry.get("target", ""))
        if "RSS" in str(entry.get("ratio", "")) and target.startswith("<"):
            try:
                return number(float(target.lstrip("< ")))
            except ValueError:
                return None
    return None


def render_data_path(doc: dict[str, Any], commit: str) -> Figure:
    from matplotlib.figure import Figure

    targets: dict[str, Any] = doc.get("targets") or {}
    limits: dict[str, Any] = doc.get("limits") or {}
    settings: dict[str, Any] = doc.get("settings") or {}
    machine: dict[str, Any] = doc.get("machine") or {}
    names = list(targets)
    shown = [display_name(n) for n in names]
    size_mib = (number(settings.get("size_bytes")) or 0) / (1 << 20)
    piped_mib = (number(settings.get("rss_upload_bytes")) or 0) / (1 << 20)
    piped = f"{piped_mib:,.0f} MiB" if piped_mib else "no"  # --rss-mib 0: not measured
    vs = shown[1] if len(shown) >= 2 else ""

    def per_target(make: Callable[[int, dict[str, Any]], list[Bar]]) -> list[SeriesBars]:
        return [
            (shown[i], target_colour(name, i), make(i, targets[name]))
            for i, name in enumerate(names)
        ]

    def limit_line(key: str, groups: tuple[int, ...]) -> list[RefLine]:
        value = series_median(limits.get(key))
        if value is None:
            return []
        label, colour, style = LIMITS[key]
        return [RefLine(value, f"limit: {label}, {fmt(value, 0)} MB/s", colour, style, groups)]

    fig = Figure(figsize=(15, 12), dpi=DPI)
    cache = "dropped before every upload" if settings.get("drop_caches") else "not dropped"
    header(
        fig,
        f"Image data path: {' vs '.join(shown) or 'machine limits only'} — "
        f"{run_date(doc.get('generated_at'))} — {commit}",
        f"{size_mib:,.0f} MiB of random bytes, {settings.get('runs', '?')} runs per figure "
        f"(bar: median, dots: the runs); page cache {cache}; {machine.get('cpus', '?')} CPUs, "
        f"{machine.get('platform', '?')}",
    )
    top = fig.add_gridspec(1, 3, left=0.06, right=0.985, top=0.9, bottom=0.57, wspace=0.22)
    bottom = fig.add_gridspec(1, 3, left=0.135, right=0.985, top=0.46, bottom=0.2, wspace=0.3)

    # Uploads, against the hash and the disk-write limit.
    hash2 = series_median(limits.get("hash2"))

    def upload_bar(index: int, part: Any, value: float | None = None) -> Bar:
        bar = Bar(series_median(part) if value is None else value, series_runs(part))
        share = ratio(bar.value, hash2)
        if index == 0 and share is not None:
            bar.labels.append((f"{share:.2f}{TIMES} hash limit", LIMITS["hash2"][1]))
        return bar

    ax = fig.add_subplot(top[0, :2])
    grouped_bars(
        ax,
        [
            "Content-Length\n(curl -T file)",
            "chunked\n(Transfer-Encoding: chunked)",
            f"chunked from a pipe\n({piped}: cat file … | curl -T -)",
        ],
        per_target(
            lambda i, t: [
                upload_bar(i, t.get("upload")),
                upload_bar(i, t.get("upload_chunked")),
                upload_bar(i, None, piped_mb_s(t.get("rss"))),
            ]
        ),
        MB_S,
        digits=0,
        ratio_word=vs,
        lines=[*limit_line("hash2", (0, 1, 2)), *limit_line("write_fsync", (0, 1, 2))],
        legend_loc="upper left",
    )
    ax.set_title("Upload throughput (higher is better)", fontsize=12, loc="left")

    ax = fig.add_subplot(top[0, 2])
    grouped_bars(
        ax,
        ["download\n(curl > /dev/null, after each Content-Length upload)"],
        per_target(
            lambda i, t: [Bar(series_median(t.get("download")), series_runs(t.get("download")))]
        ),
        MB_S,
        digits=0,
        ratio_word=vs,
        lines=[*limit_line("read_warm", (0,)), *limit_line("read_cold", (0,))],
        legend_loc="upper left",
    )
    ax.set_title("Download throughput (higher is better)", fontsize=12, loc="left")

    # All the machine limits.
    ax = fig.add_subplot(bottom[0, 0])
    keys = [k for k in limits if series_median(limits[k]) is not None]
    if keys:
        ys = list(range(len(keys)))[::-1]
        values = [series_median(limits[k]) or 0.0 for k in keys]
        ax.barh(ys, values, color=[LIMITS.get(k, ("", "#999999"))[1] for k in keys], height=0.65)
        for y, key, value in zip(ys, keys, values, strict=True):
            runs = series_runs(limits[key])
            ax.plot(
                runs,
                [y] * len(runs),
                **_RUN_DOTS,
            )
            ax.annotate(
                fmt(value, 0),
                (max([value, *runs]), y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ticks = [
            textwrap.fill(LIMITS[k][0] if k in LIMITS else str(limits[k].get("label", k)), 20)
            for k in keys
        ]
        ax.set_yticks(ys, ticks, fontsize=8.5)
        ax.set_xlim(0, max(values) * 1.25)
        ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")
    else:
        ax.text(0.5, 0.5, "not measured (--skip-limits)", ha="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel(MB_S)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title("Machine limits\n(same file system)", fontsize=11.5, loc="left")

    # Memory of the server process tree during the piped upload.
    memory = [
        ("peak RSS", "peak_rss_kib"),
        ("RSS before\nthe upload", "idle_rss_kib"),
        ("peak PSS", "peak_pss_kib"),
        ("peak RSS of\none process", "peak_single_rss_kib"),
    ]
    target_mb = rss_target_mb(doc)
    ax = fig.add_subplot(bottom[0, 1])
    grouped_bars(
        ax,
        [label for label, _ in memory],
        per_target(lambda i, t: [Bar(rss_mb(t.get("rss"), key)) for _, key in memory]),
        "MB (10$^6$ bytes)",
        digits=0,
        lines=[
            RefLine(
                target_mb, f"goal: {shown[0]} peak RSS < {fmt(target_mb, 0)} MB", BAD, "--", (0,)
            )
        ]
        if target_mb is not None and shown
        else [],
        legend_loc="upper right",
    )
    ax.set_title(
        f"Server tree memory during the\n{piped} piped upload (lower is better)",
        fontsize=11.5,
        loc="left",
    )

    # Server CPU per transfer.
    ax = fig.add_subplot(bottom[0, 2])
    parts = ("upload", "upload_chunked", "download")
    grouped_bars(
        ax,
        ["upload,\nContent-Length", "upload,\nchunked", "download"],
        per_target(
            lambda i, t: [Bar(series_extra_median(t.get(p), "server_cpu_s")) for p in parts]
        ),
        f"CPU seconds per {size_mib:,.0f} MiB transfer",
        digits=2,
        legend_loc="upper right",
    )
    ax.set_title("Server tree CPU, user + system\n(lower is better)", fontsize=11.5, loc="left")

    rows = goal_rows(
        [
            (e.get("met"), str(e.get("ratio")), e.get("value"), f"target {e.get('target')}")
            for e in doc.get("ratios") or []
            if isinstance(e, dict)
        ]
    )
    errors = [str(e) for e in doc.get("errors") or []]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        rows.append((f"✗ {len(errors)} error(s): {textwrap.shorten(errors[0], 100)}{more}", BAD))
    fig.text(0.06, 0.125, "Project goals", fontsize=12, fontweight="bold")
    goals_text(fig, (0.06, 0.01, 0.93, 0.1), rows or [("no targets measured", NEUTRAL)])
    return fig


# --------------------------------------------------------------------- api_latency.py

ENDPOINTS: dict[str, str] = {
    "list": "GET /v2/images?limit=100",
    "show": "GET /v2/images/{id}",
    "create": "POST /v2/images",
}


def phase_of(target: dict[str, Any], operation: str, concurrency: int) -> dict[str, Any] | None:
    for phase in target.get("phases") or []:
        if phase.get("operation") == operation and phase.get("concurrency") == concurrency:
            return dict(phase)
    return None


def clients(count: int) -> str:
    return f"{count} client{'' if count == 1 else 's'}"


def limit_text(goal: dict[str, Any]) -> str:
    limit = goal.get("limit")
    if isinstance(limit, int) and not isinstance(limit, bool):
        return str(limit)
    value = number(limit)
    return "n/a" if value is None else fmt(value, 2)


def render_api_latency(doc: dict[str, Any], commit: str) -> Figure:
    from matplotlib.figure import Figure

    targets: list[dict[str, Any]] = [t for t in doc.get("targets") or [] if isinstance(t, dict)]
    settings: dict[str, Any] = doc.get("settings") or {}
    labels = [str(t.get("label", f"target {i + 1}")) for i, t in enumerate(targets)]
    shown = [display_name(label) for label in labels]
    phases = [p for t in targets for p in t.get("phases") or [] if isinstance(p, dict)]
    concurrencies = [int(c) for c in settings.get("concurrency") or []] or sorted(
        {int(p["concurrency"]) for p in phases if isinstance(p.get("concurrency"), int)}
    )
    operations = list(dict.fromkeys(str(p.get("operation")) for p in phases)) or list(ENDPOINTS)
    goals = [g for g in (doc.get("comparison") or {}).get("goals") or [] if isinstance(g, dict)]

    def p95_goal(operation: str, concurrency: int) -> float | None:
        for goal in goals:
            text = str(goal.get("goal"))
            if text.startswith(f"{operation} p95") and text.endswith(f"at {concurrency} clients"):
                return number(goal.get("limit"))
        return None

    loads = []
    for name, t in zip(shown, targets, strict=True):
        rate = number((t.get("load") or {}).get("rate_per_s"))
        loads.append(f"{name} {fmt(rate, 0)}/s" if rate else f"{name} none")
    images = settings.get("images")
    fig = Figure(figsize=(max(6.0 * len(operations), 12.0), 10.5), dpi=DPI)
    header(
        fig,
        f"Metadata API latency: {' vs '.join(shown) or 'no targets'} — "
        f"{run_date(doc.get('started_at'))} — {commit}",
        f"{f'{images:,}' if isinstance(images, int) else '?'} images loaded (created: "
        f"{', '.join(loads)}); {settings.get('requests_per_phase', '?')} requests per phase; "
        "client-side wall time per request, body read; p95 = nearest rank; "
        f"Python {settings.get('python', '?')}, httpx {settings.get('httpx', '?')}",
    )
    grid = fig.add_gridspec(
        2,
        len(operations),
        height_ratios=(1.35, 1),
        left=0.055,
        right=0.99,
        top=0.89,
        bottom=0.22,
        hspace=0.42,
        wspace=0.2,
    )
    cells = [(c, key) for c in concurrencies for key in ("median_ms", "p95_ms")]
    for column, operation in enumerate(operations):
        latency_series: list[SeriesBars] = []
        rps_series: list[SeriesBars] = []
        for i, (name, t) in enumerate(zip(shown, targets, strict=True)):
            latency: list[Bar] = []
            rps: list[Bar] = []
            for c, key in cells:
                phase = phase_of(t, operation, c) or {}
                bar = Bar(number(phase.get(key)))
                errors = int(phase.get("errors") or 0)
                if key == "p95_ms" and errors:
                    bar.labels.append((f"{errors:,} error{'' if errors == 1 else 's'}", BAD))
                latency.append(bar)
                if key == "median_ms":
                    rps.append(Bar(number(phase.get("throughput_rps"))))
            colour = target_colour(labels[i], i)
            latency_series.append((name, colour, latency))
            rps_series.append((name, colour, rps))
        goal_lines: list[RefLine] = []
        if len(latency_series) >= 2:
            for group, (c, key) in enumerate(cells):
                limit = p95_goal(operation, c)
                reference = latency_series[1][2][group].value
                if key == "p95_ms" and limit and reference is not None:
                    goal_lines.append(
                        RefLine(
                            limit * reference,
                            f"goal: {shown[0]} p95 ≤ 1/{round(1 / limit)} of {shown[1]}'s",
                            GOOD,
                            "--",
                            (group,),
                        )
                    )

        def goal_colour(group: int, value: float, operation: str = operation) -> str:
            c, key = cells[group]
            limit = p95_goal(operation, c)
            if key != "p95_ms" or limit is None:
                return "black"
            return GOOD if value <= limit else BAD

        ax = fig.add_subplot(grid[0, column])
        grouped_bars(
            ax,
            [f"{'p50' if key == 'median_ms' else 'p95'}\n{clients(c)}" for c, key in cells],
            latency_series,
            "milliseconds per request",
            ratio_colour=goal_colour,
            lines=goal_lines,
            legend_loc="upper left",
        )
        ax.set_title(
            f"{operation}: {ENDPOINTS.get(operation, operation)}\nlatency (lower is better)",
            fontsize=11.5,
            loc="left",
        )

        ax = fig.add_subplot(grid[1, column])
        grouped_bars(
            ax,
            [clients(c) for c in concurrencies],
            rps_series,
            "requests per second",
            digits=0,
            legend_loc="upper left",
        )
        ax.set_title(f"{operation}: throughput (higher is better)", fontsize=11.5, loc="left")

    rows = goal_rows(
        [
            (g.get("met"), str(g.get("goal")), g.get("value"), f"limit {limit_text(g)}")
            for g in goals
        ]
    )
    fig.text(0.055, 0.165, "Project goals", fontsize=12, fontweight="bold")
    goals_text(fig, (0.055, 0.01, 0.93, 0.145), rows or [("no comparison: one target", NEUTRAL)])
    return fig


# --------------------------------------------------------------------- entry points


def kind_of(doc: Any) -> str:
    """'data_path' or 'api_latency', from the document's shape."""
    if isinstance(doc, dict):
        if "limits" in doc and isinstance(doc.get("targets"), dict):
            return "data_path"
        if isinstance(doc.get("targets"), list) and "started_at" in doc:
            return "api_latency"
    raise ChartError("not a result of bench/data_path.py or bench/api_latency.py")


def render_file(source: Path, out: Path | None = None, commit: str | None = None) -> Path:
    """Chart `source` into `out` (default: the same name with .png); returns the PNG's path."""
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ChartError(f"{source}: cannot read JSON: {exc}") from exc
    try:
        kind = kind_of(doc)
    except ChartError as exc:
        raise ChartError(f"{source}: {exc}") from None
    load_matplotlib()
    render = render_data_path if kind == "data_path" else render_api_latency
    fig = render(doc, commit_text(doc, commit))
    target = out or source.with_suffix(".png")
    fig.savefig(target, dpi=DPI, facecolor="white")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a PNG chart next to each bench result JSON (data_path or api_latency)."
    )
    parser.add_argument("json", nargs="+", type=Path, help="result file(s) written by a runner")
    parser.add_argument("--out", type=Path, help="PNG to write (only with one JSON file)")
    parser.add_argument("--commit", help="commit for the title, for results that do not record one")
    args = parser.parse_intermixed_args(argv)
    if args.out and len(args.json) > 1:
        parser.error("--out needs exactly one JSON file")
    status = 0
    for source in args.json:
        try:
            png = render_file(source, args.out, args.commit)
        except ChartError as exc:
            print(f"[chart] {exc}", file=sys.stderr)
            status = 2
            continue
        print(f"[chart] {png}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
