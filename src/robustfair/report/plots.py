"""Figures for the report, drawn with matplotlib's object API on the Agg canvas.

No pyplot: figures are plain `matplotlib.figure.Figure` objects (no global state, no
backend switch in the caller's process); `figure_png` renders one to PNG bytes.

- per_class_error_figure: clean and robust error per class, runs side by side (BAT Figures 1, 4)
- confusion_figure: a confusion matrix, row-normalised, as a heatmap
- steps_to_flip_figure: mean and distribution of attack steps to misclassify per class (BAT Figure 2)
- target_figure: target-class distribution, per-source targets, KL from uniform by step
- training_figure: loss, learning rate and validation errors over epochs, then one small panel
  per class with its validation clean and robust error (metrics.jsonl)
- method_state_figure: per-class method state over epochs (FRL multipliers, class weights, ...)
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of `fig` (rendered on an Agg canvas)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _nan(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _short(names: Sequence[str], width: int = 10) -> list[str]:
    """Tick labels cut to `width` characters ("automob."), widened until no two distinct
    class names share a label (ImageNet's "American alligator" and "American black bear", say)."""
    longest = max((len(n) for n in names), default=0)
    for w in range(width, longest + 1):
        cut = [n if len(n) <= w else n[: w - 1] + "." for n in names]
        if len(set(cut)) == len(set(names)):
            return cut
    return list(names)


def per_class_error_figure(
    labels: Sequence[str],
    classes: Sequence[str],
    clean_errors: Sequence[Sequence[float]],
    robust_errors: Sequence[Sequence[float]],
    *,
    title: str = "",
) -> Figure:
    """Grouped bars: one group per class, one bar per run; clean error on top, robust below (in %)."""
    n_runs, n_classes = len(labels), len(classes)
    fig = Figure(figsize=(max(8.0, 0.5 * n_classes * max(1, n_runs) ** 0.5 + 3), 6.5))
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(1, n_runs)
    x = np.arange(n_classes)
    for ax, values, name in ((axes[0], clean_errors, "clean error %"), (axes[1], robust_errors, "robust error %")):
        for i, (label, row) in enumerate(zip(labels, values)):
            ax.bar(x - 0.4 + width * (i + 0.5), _nan(row), width, label=label, color=f"C{i % 10}")
        ax.set_ylabel(name)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(
        fontsize=8, ncol=min(n_runs, 4), loc="lower left", bbox_to_anchor=(0.0, 1.01), frameon=False
    )  # above the axes, never over the bars
    axes[1].set_xticks(x)
    axes[1].set_xticklabels(
        _short(classes), rotation=45 if n_classes > 10 else 0, ha="right" if n_classes > 10 else "center"
    )
    if title:
        axes[0].set_title(title, pad=22)
    fig.tight_layout()
    return fig


def confusion_figure(matrix: Sequence[Sequence[float]], classes: Sequence[str], *, title: str = "") -> Figure:
    """Row-normalised confusion matrix in % (rows: true class, columns: predicted class)."""
    counts = np.asarray(matrix, dtype=np.float64)
    totals = counts.sum(1, keepdims=True)
    shares = np.divide(100.0 * counts, totals, out=np.zeros_like(counts), where=totals > 0)
    n = len(classes)
    size = min(9.0, max(4.0, 0.45 * n + 2))
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of the true class")
    if n <= 15:
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(_short(classes, 8), rotation=45, ha="right", fontsize=8)
        ax.set_yticklabels(_short(classes, 8), fontsize=8)
        for i in range(n):
            for j in range(n):
                if totals[i, 0] > 0:
                    ax.text(
                        j,
                        i,
                        f"{shares[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if shares[i, j] > 50 else "black",
                    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def steps_to_flip_figure(analysis: Mapping[str, Any]) -> Figure:
    """Left: mean steps to misclassify per class (bars) and robust accuracy (line).
    Right: distribution of the flip steps of the samples that flipped (box per class)."""
    classes = analysis["classes"]
    source = analysis["source"]
    per_class = analysis["per_class"]
    n = len(classes)
    fig = Figure(figsize=(max(10.0, 0.9 * n + 4), 4.2))
    left, right = fig.subplots(1, 2)
    x = np.arange(n)
    left.bar(x, _nan(per_class["mean_steps"]), color="C0", label="mean steps to misclassify")
    left.set_ylabel("attack steps (never flipped = K + 1)")
    twin = left.twinx()
    twin.plot(x, 100 * _nan(per_class["robust_acc"]), "o-", color="C3", label="robust accuracy")
    twin.set_ylabel("robust accuracy %", color="C3")
    twin.set_ylim(0, 100)
    left.set_xticks(x)
    left.set_xticklabels(_short(classes, 8), rotation=45, ha="right", fontsize=8)
    attack = source["attack"]
    left.set_title(f"source class: {attack['steps']} steps of {attack['step_size']:.4g}")
    handles = left.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")

    flips = np.asarray(source["flip_step"])
    labels = np.asarray(source["labels"])
    censored = source["censored_value"]
    groups = [flips[(labels == c) & (flips >= 0)] for c in range(n)]
    positions = [c for c in range(n) if groups[c].size]
    if positions:
        right.boxplot([groups[c] for c in positions], positions=positions, widths=0.6, showfliers=True)
    never = _nan(source["per_class"]["never_flipped"])
    # The share never misclassified, written along the top edge above each class.
    top_edge = right.get_xaxis_transform()
    for c in range(n):
        if not math.isnan(never[c]) and never[c] > 0:
            right.text(
                c, 0.97, f"{100 * never[c]:.0f}%", transform=top_edge, ha="center", va="top", fontsize=7, color="C3"
            )
    right.set_xticks(range(n))
    right.set_xticklabels(_short(classes, 8), rotation=45, ha="right", fontsize=8)
    right.set_xlim(-0.7, n - 0.3)
    low, high = right.get_ylim()
    right.set_ylim(low, high + 0.12 * (high - low))  # room for the percentages
    right.set_ylabel("steps to misclassify (flipped samples)")
    right.set_title(f"distribution (K = {censored - 1}); red: % never misclassified", fontsize=10)
    fig.tight_layout()
    return fig


def target_figure(analysis: Mapping[str, Any]) -> Figure:
    """Overall target distribution vs uniform, per-source target shares, KL to uniform by step."""
    classes = analysis["classes"]
    target = analysis["target"]
    n = len(classes)
    fig = Figure(figsize=(14.0, 4.4))
    bars, heat, curve = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.0, 0.9]})
    x = np.arange(n)
    bars.bar(x, 100 * _nan(target["distribution"]), color="C1")
    bars.axhline(100.0 / n, color="k", linestyle="--", linewidth=1, label="uniform")
    bars.set_xticks(x)
    bars.set_xticklabels(_short(classes, 8), rotation=45, ha="right", fontsize=8)
    bars.set_ylabel("% of adversarial misclassifications")
    kl = target.get("kl_to_uniform")
    bars.set_title("target classes" + (f" (KL to uniform {kl:.3f})" if kl is not None else ""))
    bars.legend(fontsize=8)

    shares = np.asarray([[np.nan if v is None else 100 * v for v in row] for row in target["per_source"]])
    image = heat.imshow(np.ma.masked_invalid(shares), cmap="Oranges", vmin=0, vmax=100)
    fig.colorbar(image, ax=heat, fraction=0.046, pad=0.04)
    if n <= 15:
        heat.set_xticks(range(n))
        heat.set_yticks(range(n))
        heat.set_xticklabels(_short(classes, 8), rotation=45, ha="right", fontsize=7)
        heat.set_yticklabels(_short(classes, 8), fontsize=7)
    heat.set_xlabel("target class")
    heat.set_ylabel("source class")
    heat.set_title("targets per source class, %")

    steps = np.arange(len(target["kl_by_step"]))
    curve.plot(steps, _nan(target["kl_by_step"]), "o-", color="C2")
    curve.set_xlabel("attack step")
    curve.set_ylabel("KL(targets || uniform), nats")
    curve.set_title(f"{target['attack']['steps']} steps of {target['attack']['step_size']:.4g}")
    curve.grid(alpha=0.3)
    fig.tight_layout()
    return fig


MAX_CLASS_PANELS = 20


def training_figure(metrics: Sequence[Mapping[str, Any]], classes: Sequence[str] = ()) -> Figure | None:
    """Training loss and lr, validation summary errors, then small multiples: one panel per
    class with its validation clean and robust error over epochs (shared axes, 0-100 %).

    Legends sit outside the axes. With more than MAX_CLASS_PANELS classes the panels show the
    classes with the highest last robust error (said in the panels' heading). None when there
    are no epoch records.
    """
    if not metrics:
        return None
    epochs = np.asarray([m.get("epoch", i + 1) for i, m in enumerate(metrics)], dtype=np.float64)
    with_val = [(e, m["val"]) for e, m in zip(epochs, metrics) if isinstance(m.get("val"), Mapping)]
    robust = [v.get("robust_acc") or [] for _, v in with_val]
    clean = [v.get("clean_acc") or [] for _, v in with_val]
    width = max((len(r) for r in robust + clean), default=0)
    names = list(classes) if len(classes) == width else [str(c) for c in range(width)]
    val_epochs = np.asarray([e for e, _ in with_val])

    def errors(rows: list, c: int) -> np.ndarray:
        return 100.0 - _nan([r[c] if c < len(r) else None for r in rows])

    shown = list(range(width))
    if width > MAX_CLASS_PANELS:  # the classes that end worst
        last = [errors(robust, c)[-1] if robust else np.nan for c in shown]
        shown = sorted(sorted(shown, key=lambda c: -np.nan_to_num(last[c], nan=-1.0))[:MAX_CLASS_PANELS])
    cols = min(5, len(shown)) if shown else 1
    rows = math.ceil(len(shown) / cols) if shown else 0
    fig = Figure(figsize=(14.0, 4.2 + 2.1 * rows + (0.4 if rows else 0)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.2, 2.1 * rows + 0.4]) if rows else (fig, None)
    loss_ax, val_ax = top.subplots(1, 2)

    loss_ax.plot(epochs, _nan([m.get("loss") for m in metrics]), "o-", color="C0", label="training loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    lr_ax = loss_ax.twinx()
    lr_ax.plot(epochs, _nan([m.get("lr") for m in metrics]), "--", color="C7", label="learning rate")
    lr_ax.set_ylabel("learning rate", color="C7")
    loss_ax.set_title("training")
    handles = loss_ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    loss_ax.legend(
        handles,
        [h.get_label() for h in handles],
        fontsize=8,
        ncol=2,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        frameon=False,
    )

    if with_val:
        for key, label, style in (
            ("avg_std_err", "avg clean", "C0-"),
            ("worst_std_err", "worst clean", "C0--"),
            ("avg_rob_err", "avg robust", "C3-"),
            ("worst_rob_err", "worst robust", "C3--"),
        ):
            val_ax.plot(val_epochs, _nan([v.get("summary", {}).get(key) for _, v in with_val]), style, label=label)
        val_ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    else:
        val_ax.text(0.5, 0.5, "no validation records", ha="center", va="center", transform=val_ax.transAxes)
    val_ax.set_xlabel("epoch")
    val_ax.set_ylabel("validation error %")
    val_ax.set_title("validation")
    val_ax.grid(alpha=0.3)

    if bottom is not None:
        panels = np.atleast_1d(bottom.subplots(rows, cols, sharex=True, sharey=True)).ravel()
        for ax, c in zip(panels, shown):
            if clean:
                ax.plot(val_epochs, errors(clean, c), "-", color="C0", label="clean error")
            ax.plot(val_epochs, errors(robust, c), "-", color="C3", label="robust error")
            ax.set_title(names[c], fontsize=9)
            ax.set_ylim(-3, 103)
            ax.grid(alpha=0.3)
        for index, ax in enumerate(panels):
            if index >= len(shown):
                ax.set_visible(False)
            if index % cols == 0:
                ax.set_ylabel("val. error %", fontsize=8)
            if index >= len(shown) - cols:
                ax.set_xlabel("epoch", fontsize=8)
                ax.tick_params(labelbottom=True)
        heading = "validation error per class" + (
            f" ({len(shown)} of {width} classes: the highest last robust error)" if len(shown) < width else ""
        )
        panels[cols - 1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.04, 1.0), frameon=False)
        bottom.suptitle(heading, x=0.01, ha="left", fontsize=11)
    return fig


def method_state_figure(
    metrics: Sequence[Mapping[str, Any]], classes: Sequence[str] = (), max_panels: int = 9
) -> Figure | None:
    """One panel per per-class quantity a method logs each epoch (a list of C numbers under
    `method`, e.g. FRL's multipliers l0, l1, l2, class weights w0, w1, eps factors), one line
    per class; one more panel for its scalars. None when the method logs nothing."""
    records = [(m.get("epoch", i + 1), m.get("method")) for i, m in enumerate(metrics)]
    records = [(e, s) for e, s in records if isinstance(s, Mapping)]
    if not records:
        return None
    vectors: dict[str, int] = {}
    scalars: list[str] = []
    for _, state in records:
        for key, value in state.items():
            if (
                isinstance(value, (list, tuple))
                and value
                and all(isinstance(v, (int, float)) or v is None for v in value)
            ):
                vectors[key] = max(vectors.get(key, 0), len(value))
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in scalars:
                scalars.append(key)
    panels = list(vectors)[:max_panels] + (["(scalars)"] if scalars else [])
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, key in zip(axes, panels):
        if key == "(scalars)":
            for i, name in enumerate(scalars):
                points = [(e, s.get(name)) for e, s in records if isinstance(s.get(name), (int, float))]
                ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color=f"C{i % 10}", label=name)
            ax.legend(fontsize=7)
        else:
            width = vectors[key]
            names = list(classes) if len(classes) == width else [str(c) for c in range(width)]
            for c in range(width):
                values = [
                    (e, s[key][c])
                    for e, s in records
                    if isinstance(s.get(key), (list, tuple)) and c < len(s[key]) and s[key][c] is not None
                ]
                ax.plot([v[0] for v in values], [v[1] for v in values], "-", color=f"C{c % 10}", label=names[c])
            if key == panels[0]:
                ax.legend(fontsize=6, ncol=2 if width > 5 else 1)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


__all__ = [
    "figure_png",
    "per_class_error_figure",
    "confusion_figure",
    "steps_to_flip_figure",
    "target_figure",
    "training_figure",
    "method_state_figure",
]
