"""Run reports: ``report.html`` (self-contained, PNG plots embedded as base64) and ``plots/*.png``.

:func:`write_run_report` is what the engine calls at the end of every run (and ``alignkit report
RUN_DIR`` re-runs). It plots every numeric metric the run logged in ``metrics.jsonl``; related curves
share a figure: a metric and its ``eval_`` counterpart (``loss`` with ``eval_loss``), and
``X/chosen`` with ``X/rejected`` (``rewards/...``, ``logps/...``). Long noisy curves are drawn faint
with a centred moving average on top. The page also has a table of final / min / max values,
the run's eval results (``results.json`` in the run directory or its ``eval/``, as written by
``alignkit eval``) and the resolved ``config.yaml``.

:func:`write_comparison_report` puts several runs on one page: one figure per metric that at least
two runs logged, with a curve per run, and tables of final metrics and eval results side by side.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from alignkit import files
from alignkit.engine.logging import read_metrics

logger = logging.getLogger("alignkit.report")

__all__ = ["load_eval_results", "metric_series", "plot_groups", "write_comparison_report", "write_run_report"]

# plotted first when present; every other numeric metric follows alphabetically
# (a cost-constrained run's Lagrange multiplier and cost right after the loss: lambda's trajectory is its headline)
PREFERRED = ["loss", "lambda", "cost", "cost_violation", "learning_rate", "grad_norm", "rewards/margins",
             "rewards/accuracies", "rewards/chosen", "logps/chosen", "reward", "reward_std", "kl", "entropy", "clip_ratio", "completion_length",
             "tokens_per_second"]
NOT_PLOTTED = {"epoch"}
SMOOTH_ABOVE = 40  # points: longer curves get a moving average on top of the faint raw curve
NOT_SMOOTHED = {"learning_rate", "epoch"}

Series = dict[str, tuple[list[int], list[float]]]


# ------------------------------------------------------------------------------------------- data
def _order(names: list[str]) -> list[str]:
    def key(n: str) -> tuple:
        base = n[5:] if n.startswith("eval_") else n
        return (PREFERRED.index(base) if base in PREFERRED else len(PREFERRED), base, n.startswith("eval_"))

    return sorted(names, key=key)


def metric_series(rows: list[dict]) -> Series:
    """``{metric: (steps, values)}`` for every finite numeric metric, in display order."""
    series: Series = {}
    for row in rows:
        if "step" not in row:
            continue
        for k, v in row.items():
            if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            xs, ys = series.setdefault(k, ([], []))
            xs.append(int(row["step"]))
            ys.append(float(v))
    return {k: series[k] for k in _order(list(series))}


def plot_groups(names: list[str]) -> list[tuple[str, list[str]]]:
    """Figures as ``(title, [metric, ...])``: a metric with its ``eval_`` twin, ``X/chosen`` with
    ``X/rejected``; every metric appears in exactly one figure (``epoch`` in none)."""
    present = [n for n in _order(list(names)) if n not in NOT_PLOTTED]
    used: set[str] = set()
    groups: list[tuple[str, list[str]]] = []
    for n in present:
        if n in used:
            continue
        base = n[5:] if n.startswith("eval_") else n
        if base.endswith("/chosen") or base.endswith("/rejected"):
            stem = base.rsplit("/", 1)[0]
            members = [m for m in (f"{stem}/chosen", f"{stem}/rejected", f"eval_{stem}/chosen",
                                   f"eval_{stem}/rejected") if m in present and m not in used]
            title = f"{stem}/chosen vs rejected" if len(members) > 1 else members[0]
        else:
            members = [m for m in (base, f"eval_{base}") if m in present and m not in used]
            title = base if base in members else members[0]
        used.update(members)
        groups.append((title, members))
    return groups


def load_eval_results(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``results.json`` of ``alignkit eval`` kept with a run (``RUN/results.json`` or ``RUN/eval/``)."""
    run = Path(run_dir)
    for p in (run / "results.json", run / "eval" / "results.json"):
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and isinstance(data.get("models"), list) and data["models"]:
                data["_path"] = str(p)
                return data
    return None


def _run_model_entry(results: dict[str, Any], run: Path) -> dict[str, Any]:
    """The evaluated model that is this run's model (``RUN`` or ``RUN/final``), else the last one."""
    targets = {run.resolve(), (run / "final").resolve()}
    for m in results["models"]:
        try:
            if Path(m.get("model", "")).resolve() in targets:
                return m
        except OSError:  # pragma: no cover
            continue
    return results["models"][-1]


def _read_config(run: Path) -> str | None:
    p = run / "config.yaml"
    try:
        return p.read_text() if p.is_file() else None
    except OSError:  # pragma: no cover
        return None


def _config_value(text: str | None, key: str) -> str | None:
    if not text:
        return None
    m = re.search(rf"^{re.escape(key)}:\s*(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


# ------------------------------------------------------------------------------------------ plots
def _smooth(ys: list[float]) -> list[float]:
    """Centred moving average (window about n/25, symmetric and shrinking at the ends so the first and
    last points stay as logged): no lag, and linear trends pass through unchanged."""
    n = len(ys)
    half = max(1, n // 50)
    prefix = [0.0]
    for y in ys:
        prefix.append(prefix[-1] + y)
    out = []
    for i in range(n):
        h = min(half, i, n - 1 - i)
        out.append((prefix[i + h + 1] - prefix[i - h]) / (2 * h + 1))
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_png(title: str, curves: list[tuple[str, list[int], list[float]]], eval_style: bool = True) -> bytes:
    """One figure with a line per ``(label, steps, values)``; PNG bytes. An ``eval_`` curve takes the
    colour of its training twin, dashed with markers."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=90)
    bases: list[str] = []
    for label, xs, ys in curves:
        is_eval = eval_style and label.startswith("eval_")
        base = label[5:] if is_eval else label
        if base not in bases:
            bases.append(base)
        color = f"C{bases.index(base) % 10}"
        style = {"linestyle": "--", "marker": "o", "markersize": 3} if is_eval else {}
        if len(xs) > SMOOTH_ABOVE and base not in NOT_SMOOTHED and title not in NOT_SMOOTHED:
            ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8, **{k: v for k, v in style.items() if k == "linestyle"})
            ax.plot(xs, _smooth(ys), color=color, label=label, linewidth=1.4, **style)
        else:
            ax.plot(xs, ys, color=color, label=label, **({"marker": "."} | style if len(xs) < 50 else style))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.9, bottom=0.15)  # fixed: tight_layout costs a full draw
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _file_name(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("_") + ".png"


def _figure_html(title: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


# ------------------------------------------------------------------------------------------- html
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.2em 2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f4f4f4}figure{display:inline-block;margin:.4em;vertical-align:top}
figcaption{font-size:.8em;color:#555;text-align:center}.meta{color:#555;font-size:.9em}
pre{background:#f8f8f8;padding:.6em;font-size:.85em;overflow:auto}
"""


def _fmt(v: Any) -> str:
    from alignkit.evaluation.tables import fmt

    return fmt(v)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: list[str]) -> str:
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>" + "".join(body)
            + f"<p class='meta'>written by alignkit on {stamp}</p></body></html>")


def _eval_section(results: dict[str, Any]) -> str:
    from alignkit.evaluation.runner import _extra_lines, results_table

    headers, rows = results_table(results)
    lines = "".join(f"<li>{html.escape(x)}</li>" for x in _extra_lines(results))
    p = results.get("prompts", {})
    return (f"<h2>Evaluation</h2><p class='meta'>{html.escape(str(results.get('_path', '')))}: "
            f"{html.escape(str(p.get('n', '?')))} prompts from {html.escape(str(p.get('file', '?')))}, "
            f"split {html.escape(str(p.get('split', '?')))}</p>"
            + _html_table(headers, rows) + (f"<ul>{lines}</ul>" if lines else ""))


def write_run_report(run_dir: str | Path, output: str | Path | None = None) -> Path | None:
    """Write ``report.html`` (or ``output``) and ``plots/*.png`` for a run; returns the HTML path
    (None when the run logged no metrics)."""
    run = Path(run_dir)
    if not (run / "metrics.jsonl").is_file():
        return None
    series = metric_series(read_metrics(run))
    if not series:
        return None
    try:
        _pyplot()
    except ImportError:
        logger.warning("report.html not written: plots need matplotlib (pip install 'alignkit[report]')")
        return None
    plots = run / "plots"
    plots.mkdir(exist_ok=True)
    for old in plots.glob("*.png"):  # plots/ belongs to the report: no stale figures from an older layout
        old.unlink()
    figures = []
    for title, members in plot_groups(list(series)):
        curves = [(m, *series[m]) for m in members]
        png = _plot_png(title, curves)
        (plots / _file_name(title)).write_bytes(png)
        caption = "; ".join(f"{m}: last {_fmt(series[m][1][-1])}" for m in members)
        figures.append(_figure_html(title, png, caption))
    config = _read_config(run)
    steps = max(xs[-1] for xs, _ in series.values())
    meta = [f"{k} {v}" for k in ("model", "data", "method", "loss") if (v := _config_value(config, k))]
    body = [f"<p class='meta'>{html.escape(str(run.resolve()))} · last logged step {steps}"
            + (" · " + html.escape(" · ".join(meta)) if meta else "") + "</p>"]
    rows = [[name, _fmt(ys[-1]), _fmt(min(ys)), _fmt(max(ys)), str(len(ys))] for name, (_, ys) in series.items()]
    body.append("<h2>Final metrics</h2>" + _html_table(["metric", "last", "min", "max", "points"], rows))
    results = load_eval_results(run)
    if results is not None:
        body.append(_eval_section(results))
    body.append("<h2>Curves</h2>" + "".join(figures))
    if config:
        body.append(f"<h2>Config</h2><details><summary>config.yaml</summary><pre>{html.escape(config)}</pre></details>")
    out = Path(output) if output is not None else run / "report.html"
    files.write_text(out, _page(f"alignkit run: {run.name or run.resolve().name}", body))
    return out


def run_names(run_dirs: list[Path]) -> list[str]:
    """Short unique names: the directory names, or the paths as given where names collide."""
    names = [p.resolve().name for p in run_dirs]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(run_dirs, names)]


def write_comparison_report(run_dirs: list[str | Path], output: str | Path) -> Path:
    """One page comparing runs: overlaid curves per shared metric, final metrics and eval results."""
    runs = [Path(r) for r in run_dirs]
    names = run_names(runs)
    all_series = [metric_series(read_metrics(r)) if (r / "metrics.jsonl").is_file() else {} for r in runs]
    metrics = _order(sorted({m for s in all_series for m in s}))
    body = []
    rows = []
    for name, run, s in zip(names, runs, all_series):
        config = _read_config(run)
        last = max((xs[-1] for xs, _ in s.values()), default=0)
        rows.append([name, str(run), _config_value(config, "model") or "–", str(last)])
    body.append("<h2>Runs</h2>" + _html_table(["run", "path", "model", "last step"], rows))

    final_rows = [[m] + [_fmt(s[m][1][-1]) if m in s else "–" for s in all_series] for m in metrics]
    body.append("<h2>Final metrics</h2><p class='meta'>last logged value of each metric</p>"
                + _html_table(["metric"] + names, final_rows))

    evals = [load_eval_results(r) for r in runs]
    if any(e is not None for e in evals):
        body.append(_comparison_eval_section(names, runs, evals))

    shared = [m for m in metrics if m not in NOT_PLOTTED and sum(m in s for s in all_series) >= 2]
    figures = []
    for m in shared:
        curves = [(name, *s[m]) for name, s in zip(names, all_series) if m in s]
        figures.append(_figure_html(m, _plot_png(m, curves, eval_style=False), f"{m}: " + "; ".join(
            f"{name} {_fmt(s[m][1][-1])}" for name, s in zip(names, all_series) if m in s)))
    only = [m for m in metrics if m not in NOT_PLOTTED and m not in shared]
    body.append("<h2>Curves</h2>" + ("".join(figures) or "<p>No metric is shared by two runs.</p>")
                + (f"<p class='meta'>logged by one run only: {html.escape(', '.join(only))}</p>" if only else ""))
    out = Path(output)
    files.write_text(out, _page(f"alignkit comparison: {', '.join(names)}", body))
    return out


def _comparison_eval_section(names: list[str], runs: list[Path], evals: list[dict | None]) -> str:
    from alignkit.evaluation.tables import fmt_pct

    entries = [_run_model_entry(e, r) if e is not None else None for e, r in zip(evals, runs)]
    types = sorted({t for e in entries if e for t in e.get("gold", {}).get("per_type", {})})

    def get(e: dict | None, *path: str) -> Any:
        for p in path:
            if not isinstance(e, dict):
                return None
            e = e.get(p)
        return e

    rows = [["evaluated model"] + [str(e.get("name", e.get("model"))) if e else "–" for e in entries],
            ["gold prompt-level strict"] + [fmt_pct(get(e, "gold", "prompt_level")) for e in entries],
            ["gold instruction-level strict"] + [fmt_pct(get(e, "gold", "instruction_level")) for e in entries]]
    rows += [[f"  {t}"] + [fmt_pct(get(e, "gold", "per_type", t, "pass_rate")) for e in entries] for t in types]
    for label, path in (("held-out perplexity", ("perplexity", "perplexity")), ("KL from reference (per token)",
                        ("kl", "kl")), ("mean reward", ("reward", "mean"))):
        if any(get(e, *path) is not None for e in entries):
            rows.append([label] + [_fmt(get(e, *path)) for e in entries])
    wins = [e.get("win_rate") if e else None for e in evals]
    if any(wins):
        rows.append(["win rate (first vs second model)"] + [
            f"{fmt_pct(w['win_rate'])} {w['model_a']} vs {w['model_b']}" if w else "–" for w in wins])
    return "<h2>Evaluation</h2><p class='meta'>from each run's results.json (alignkit eval)</p>" + \
        _html_table(["metric"] + names, rows)
