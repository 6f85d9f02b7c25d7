"""``pareto.png``: accuracy against end-to-end time (CPU ms or wall ms: the sweep's clock) and against visual tokens,
one line per method over its budgets, the Pareto front (no other run is both cheaper and more accurate) marked, titled
with the model and the data (and RANDOM WEIGHTS for the embedded tiny checkpoint)."""

from __future__ import annotations

from pathlib import Path

from .clock import CLOCK_UNITS
from .leaderboard import ACCURACY, pareto_front

__all__ = ["pareto_title", "write_pareto"]

PANELS = (("e2e_ms", "end to end {ms} per {unit} (masks included)"), ("visual_tokens", "visual tokens sent to the LLM{per}"))


def pareto_title(header: dict) -> str:
    """The figure's title: model and data, and RANDOM WEIGHTS when they are."""
    title = f"{header['model']} on {header['data']}"
    if header["random_weights"]:
        title += "\nRANDOM WEIGHTS (embedded tiny checkpoint): the scores mean nothing, the costs are the tiny model's"
    return title


def _panel(ax, rows: list[dict], x: str, accuracy: str, label: str) -> None:
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method and r[x] is not None and r[accuracy] is not None),
                      key=lambda r: r["budget"])
        if mine:
            ax.plot([r[x] for r in mine], [r[accuracy] for r in mine], marker="o", label=method)
            for r in mine:
                ax.annotate(str(r["budget"]), (r[x], r[accuracy]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = pareto_front(rows, x, accuracy)
    if front:
        ax.step([r[x] for r in front], [r[accuracy] for r in front], where="post", color="black", linestyle="--",
                linewidth=1, label="Pareto front")
        ax.scatter([r[x] for r in front], [r[accuracy] for r in front], s=110, facecolors="none", edgecolors="black",
                   linewidths=1.2)
    ax.set_xlabel(label)
    ax.set_ylabel(f"{accuracy} %")
    ax.grid(alpha=0.3)
    ax.legend(title="method (labels: budget)", fontsize=8)


def write_pareto(rows: list[dict], header: dict, out: str | Path) -> Path:
    """Draw the two panels of ``rows`` (leaderboard rows) into ``out/pareto.png`` (``eval.common.writer``: a whole
    new file, never written through a link)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    media = header["media"]
    accuracy = ACCURACY[media][0]
    unit, per = ("image", "") if media == "image" else ("video", " per frame")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, (x, label) in zip(axes, PANELS):
        _panel(ax, rows, x, accuracy, label.format(unit=unit, per=per, ms=CLOCK_UNITS[header["clock"]]))
    title = pareto_title(header)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, metadata={"Title": title.replace("\n", " - ")})
    plt.close(fig)
    from eval.common.writer import write_results_file

    return write_results_file(out, Path(out) / "pareto.png", png.getvalue())
