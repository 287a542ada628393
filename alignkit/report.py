"""``report.html``: a self-contained page with one plot per logged metric (PNG, base64-embedded)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from alignkit.engine.logging import read_metrics

# plotted first when present; every other numeric metric follows alphabetically
PREFERRED = ["loss", "learning_rate", "grad_norm", "rewards/margins", "rewards/accuracies", "reward", "kl",
             "completion_length", "tokens_per_second"]


def metric_series(rows: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        for k, v in row.items():
            if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            xs, ys = series.setdefault(k, ([], []))
            xs.append(int(row["step"]))
            ys.append(float(v))
    order = [k for k in PREFERRED if k in series] + sorted(k for k in series if k not in PREFERRED)
    return {k: series[k] for k in order}


def _plot_png(name: str, xs: list[int], ys: list[float]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=90)
    ax.plot(xs, ys, marker="." if len(xs) < 50 else None)
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_run_report(run_dir: str | Path) -> Path | None:
    """Write ``report.html`` and ``plots/*.png`` for a run; returns the HTML path (None: no metrics)."""
    run = Path(run_dir)
    if not (run / "metrics.jsonl").is_file():
        return None
    series = metric_series(read_metrics(run))
    if not series:
        return None
    plots = run / "plots"
    plots.mkdir(exist_ok=True)
    figures = []
    for name, (xs, ys) in series.items():
        png = _plot_png(name, xs, ys)
        (plots / (name.replace("/", "_") + ".png")).write_bytes(png)
        figures.append(
            f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<figcaption>{html.escape(name)}: last {ys[-1]:.4g}</figcaption></figure>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>alignkit run report</title>"
        "<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:.5em}</style>"
        f"</head><body><h1>alignkit run: {html.escape(str(run))}</h1>{''.join(figures)}</body></html>"
    )
    out = run / "report.html"
    out.write_text(page)
    return out
