"""PNG figures for the report: training curves, perplexity before/after, similarity histogram.

Uses matplotlib's object API (`Figure`, rendered by the Agg canvas): no pyplot, no display, no global state.
Each function returns PNG bytes, or None when there is nothing to draw.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BASE_COLOR, ADAPTED_COLOR, TRAIN_COLOR = "#8c8c8c", "#1f77b4", "#d62728"


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _new(width: float, height: float, columns: int = 1) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def training_plot(
    log_history: list[dict[str, Any]], base_nll: float | None, adapted_nll: float | None
) -> bytes | None:
    """Train loss and eval loss per step, the held-out NLL before/after training, and the learning rate."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    rates = [(h["step"], h["learning_rate"]) for h in log_history if "learning_rate" in h and "step" in h]
    if not train and not evals:
        return None
    figure, (loss_ax, lr_ax) = _new(10, 3.6, columns=2)
    if train:
        loss_ax.plot(
            *zip(*train, strict=True),
            color=TRAIN_COLOR,
            marker="." if len(train) < 30 else None,
            label="train",
        )
    if evals:
        loss_ax.plot(*zip(*evals, strict=False), color=ADAPTED_COLOR, marker="o", label="eval loss")
    last_step = max(step for step, _ in train + evals)
    for step, value, color, label in (
        (0, base_nll, BASE_COLOR, "held-out NLL, base"),
        (last_step, adapted_nll, ADAPTED_COLOR, "held-out NLL, adapted"),
    ):
        if value is not None and math.isfinite(value):
            loss_ax.scatter([step], [value], s=70, marker="D", color=color, zorder=3, label=label)
    loss_ax.set(title="Loss (mean NLL per trained token)", xlabel="optimizer step", ylabel="nats / token")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=8)
    for axis in (loss_ax, lr_ax):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if rates:
        lr_ax.plot(*zip(*rates, strict=False), color="#2ca02c")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    lr_ax.set(title="Learning rate", xlabel="optimizer step", ylabel="learning rate")
    lr_ax.grid(alpha=0.3)
    return _png(figure)


def perplexity_plot(
    base: dict[str, Any], adapted: dict[str, Any], rows: list[dict[str, Any]]
) -> bytes | None:
    """Bars of perplexity before/after (trained, all tokens); per-example base vs adapted on log axes."""
    names = [("trained tokens", "perplexity"), ("all tokens", "perplexity_all_tokens")]
    bars = [
        (label, base.get(key), adapted.get(key))
        for label, key in names
        if isinstance(adapted.get(key), (int, float)) and math.isfinite(adapted[key])
    ]
    if not bars:
        return None
    pairs = [
        (r["base_perplexity"], r["adapted_perplexity"])
        for r in rows
        if isinstance(r.get("base_perplexity"), float)
        and isinstance(r.get("adapted_perplexity"), float)
        and math.isfinite(r["base_perplexity"])
        and math.isfinite(r["adapted_perplexity"])
    ]
    figure, (bar_ax, dot_ax) = _new(10, 3.8, columns=2)
    positions = range(len(bars))
    for offset, side, color, index in ((-0.2, "base", BASE_COLOR, 1), (0.2, "adapted", ADAPTED_COLOR, 2)):
        if not any(isinstance(b[index], (int, float)) for b in bars):
            continue  # no base metrics (eval.base: false): adapted bars only
        values = [b[index] if isinstance(b[index], (int, float)) else 0 for b in bars]
        drawn = bar_ax.bar([p + offset for p in positions], values, width=0.4, color=color, label=side)
        bar_ax.bar_label(drawn, fmt="%.3g", fontsize=8)
    bar_ax.set_xticks(list(positions), [b[0] for b in bars])
    bar_ax.set(title="Perplexity on the eval split (lower is better)", ylabel="perplexity")
    bar_ax.legend(fontsize=8)
    if pairs:
        low = min(min(p) for p in pairs) * 0.8
        high = max(max(p) for p in pairs) * 1.25
        dot_ax.plot([low, high], [low, high], color="black", linewidth=0.8, linestyle="--", label="no change")
        dot_ax.scatter(
            *zip(*pairs, strict=False),
            s=14,
            color=ADAPTED_COLOR,
            alpha=0.7,
            label=f"examples ({sum(a < b for b, a in pairs)}/{len(pairs)} improved)",
        )
        dot_ax.set(
            xscale="log",
            yscale="log",
            xlim=(low, high),
            ylim=(low, high),
            xlabel="base perplexity",
            ylabel="adapted perplexity",
            title="Per example (below the line = better)",
        )
        dot_ax.legend(fontsize=8)
        dot_ax.grid(alpha=0.3, which="both")
        plain = FuncFormatter(lambda value, _: f"{value:g}")  # 300, not 3x10^2, on the log axes
        for axis in (dot_ax.xaxis, dot_ax.yaxis):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(plain if high / low < 10 else NullFormatter())
    else:
        dot_ax.set_axis_off()
    return _png(figure)


def similarity_plot(base_scores: list[float], adapted_scores: list[float]) -> bytes | None:
    """Overlaid histograms of the cosine similarity of answers to references, base and adapted."""
    if not adapted_scores:
        return None
    figure, (axis,) = _new(6, 3.6)
    bins = [i / 20 for i in range(-4, 21)]  # -0.2 .. 1.0 in steps of 0.05
    for scores, color, label in (
        (base_scores, BASE_COLOR, "base"),
        (adapted_scores, ADAPTED_COLOR, "adapted"),
    ):
        if scores:
            mean = sum(scores) / len(scores)
            axis.hist(scores, bins=bins, color=color, alpha=0.55, label=f"{label} (mean {mean:.3f})")
            axis.axvline(mean, color=color, linestyle="--", linewidth=1.2)
    axis.set(
        title="Answer similarity to the reference (higher is better)",
        xlabel="cosine similarity",
        ylabel="answers",
    )
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(figure)


def margin_plot(base: dict[str, list[float]] | None, adapted: dict[str, list[float]] | None) -> bytes | None:
    """Overlaid histograms of each held-out pair's log-prob margin (chosen - rejected), base and adapted."""
    if not adapted or not adapted.get("chosen"):
        return None
    figure, (axis,) = _new(6, 3.6)
    sides = [
        (side, color, label)
        for side, color, label in ((base, BASE_COLOR, "base"), (adapted, ADAPTED_COLOR, "adapted"))
        if side
    ]
    margins = {
        label: [c - r for c, r in zip(side["chosen"], side["rejected"], strict=True)]
        for side, _, label in sides
    }
    values = [v for m in margins.values() for v in m]
    low, high = min(values), max(values)
    bins = [low + (high - low) * i / 20 for i in range(21)] if high > low else 10
    for _side, color, label in sides:
        shown = margins[label]
        right = sum(m > 0 for m in shown) / len(shown)
        axis.hist(shown, bins=bins, color=color, alpha=0.55, label=f"{label} ({right:.0%} > 0)")
    axis.axvline(0, color="black", linewidth=1)
    axis.set(
        title="Preference margin per held-out pair (right of 0: chosen more likely)",
        xlabel="log p(chosen) - log p(rejected), nats",
        ylabel="pairs",
    )
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(figure)
