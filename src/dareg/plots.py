"""PNG figures of the results, drawn with matplotlib's Agg backend (no display, no internet):
DVC's HTML plots load their charting library from a CDN and show nothing offline."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dareg.io import atomic_path  # noqa: E402

COLORS = {"no_source": "tab:blue", "no_da": "tab:orange", "da": "tab:green", "da_coral": "tab:red",
          "da_rsd": "tab:purple", "da_daregram": "tab:brown", "da_dann": "tab:pink",
          "da_adabn": "tab:olive", "no_da_seed": "tab:grey", "da_seed": "tab:cyan",
          "da_dd": "gold", "source_only": "tab:orange", "oracle": "tab:blue"}


def _color(regime: str, index: int) -> str:
    return COLORS.get(regime, f"C{index % 10}")


def save(fig: plt.Figure, path: Path) -> None:
    """Write `fig` as a PNG atomically and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def predicted_vs_actual(pairs: dict[str, pd.DataFrame], task: str, unit: str) -> plt.Figure:
    """One panel per regime: predicted against true label of each test image (of each training
    seed, where the frame has a seed column), with y = x; the MAE is the mean over seeds."""
    cols = min(4, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.4 * rows), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    values = np.concatenate([np.r_[f["actual"], f["predicted"]] for f in pairs.values()])
    lims = (values.min(), values.max())
    for ax in axes.flat[len(pairs):]:
        ax.set_visible(False)
    for i, (ax, (regime, frame)) in enumerate(zip(axes.flat, pairs.items())):
        mae = np.mean(np.abs(frame["predicted"] - frame["actual"]))
        ax.scatter(frame["actual"], frame["predicted"], s=10, alpha=0.6, color=_color(regime, i))
        ax.plot(lims, lims, color="grey", lw=1, ls="--", label="perfect (y = x)")
        ax.set(title=f"{regime}: MAE {mae:.2f}", xlabel=f"true ({unit})", aspect="equal")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel(f"predicted ({unit})")
    axes[0][0].legend(loc="upper left")
    seeds = frame["seed"].nunique() if "seed" in frame else 1
    fig.suptitle(f"{task}: predicted vs true on the target test split (n = {len(frame) // seeds}"
                 + (f"; {seeds} seeds, all points shown" if seeds > 1 else "") + ")")
    return fig


def factor_errors(block: dict, task: str) -> plt.Figure:
    """Grouped bars: test MAE of each factor (and their mean) per regime, with the
    training-mean baseline's as a dashed mark over each group."""
    names, regimes = [*block["factors"], "mae"], list(block["regimes"])
    x, width = np.arange(len(names)), 0.8 / len(regimes)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(names) + 0.5 * len(regimes)), 4.4),
                           layout="constrained")
    for i, regime in enumerate(regimes):
        m = block["regimes"][regime]
        heights = [m[f]["mae"] for f in block["factors"]] + [m["mae"]]
        ax.bar(x + (i - (len(regimes) - 1) / 2) * width, heights, width, label=regime,
               color=_color(regime, i))
    base = block["baseline_train_mean"]
    ax.hlines(base["mae"], -0.45, len(names) - 0.55, color="grey", ls="--", lw=1,
              label="training mean (mean over factors)")
    ax.set_xticks(x, [*block["factors"], "mean over factors"])
    ax.set(ylabel=f"MAE ({block['unit']})")
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{task}: test MAE per factor (n = {block['n']})")
    fig.legend(loc="outside lower center", ncol=min(len(regimes) + 1, 5))
    return fig


def error_by_decade(by_regime: dict[str, dict], baseline_mae: float) -> plt.Figure:
    """Grouped bars: test MAE (years) per true-age decade for each regime, n under each group."""
    decades = sorted({d for rows in by_regime.values() for d in rows},
                     key=lambda d: int(d.split("-")[0]))
    x, width = np.arange(len(decades)), 0.8 / len(by_regime)
    fig, ax = plt.subplots(figsize=(1.1 * len(decades) + 3, 4.6), layout="constrained")
    for i, (regime, rows) in enumerate(by_regime.items()):
        heights = [rows[d]["mae"] if d in rows else np.nan for d in decades]
        ax.bar(x + (i - (len(by_regime) - 1) / 2) * width, heights, width, label=regime,
               color=_color(regime, i))
    counts = {d: rows[d]["n"] for rows in by_regime.values() for d in rows}
    ax.set_xticks(x, [f"{d}\n(n = {counts[d]})" for d in decades])
    ax.axhline(baseline_mae, color="grey", ls="--", lw=1, label="training mean, all ages")
    ax.set(xlabel="true age (years)", ylabel="MAE (years)")
    fig.suptitle("age: test MAE by true-age decade")
    fig.legend(loc="outside lower center", ncol=min(len(by_regime) + 1, 5))
    ax.grid(axis="y", alpha=0.3)
    return fig


def learning_curves(curves: dict[str, dict[str, pd.DataFrame]], task: str, unit: str) -> plt.Figure:
    """One panel per logged series (validation MAE, then the training loss terms; learning rates
    left out), a line per regime, over epochs; a regime that does not log a term is absent there.
    Each series is a frame of step and one column per training seed: the line is their mean, the
    band their range."""
    names = sorted({n for series in curves.values() for n in series if not n.startswith("lr")},
                   key=lambda n: (not n.startswith("val/"), n != "train/total", n))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes.flat, names):
        for i, (regime, series) in enumerate(curves.items()):
            if name in series:
                epochs, seeds = series[name]["step"] + 1, series[name].drop(columns="step")
                ax.plot(epochs, seeds.mean(axis=1), marker="o", ms=3, label=regime, color=_color(regime, i))
                if seeds.shape[1] > 1:  # several training seeds: their range as a band
                    ax.fill_between(epochs, seeds.min(axis=1), seeds.max(axis=1), alpha=0.2, lw=0,
                                    color=_color(regime, i))
        ax.set(title=f"{name} ({unit})" if name.startswith("val/") else name, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        values = np.concatenate([line.get_ydata() for line in ax.get_lines()])
        if values.min() > 0 and values.max() / values.min() > 20:  # spans decades: log scale
            ax.set(yscale="log", title=f"{name} (log scale)")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(curves), 5))
    fig.suptitle(f"{task}: learning curves (DVCLive; training terms are epoch means; "
                 f"with several seeds, their mean and range)")
    return fig


def regimes_side_by_side(block: dict, task: str) -> plt.Figure:
    """Test MAE and Spearman per regime with 95% bootstrap intervals; the training-mean
    baseline as a dashed line on the MAE panel (its Spearman is undefined)."""
    regimes = list(block["regimes"])
    fig, (ax_mae, ax_rho) = plt.subplots(1, 2, figsize=(max(9.5, 1.3 * len(regimes) + 3), 4.2),
                                         layout="constrained")
    colors = [_color(r, i) for i, r in enumerate(regimes)]
    for ax, key in ((ax_mae, "mae"), (ax_rho, "spearman")):
        values = [np.nan if block["regimes"][r][key] is None else block["regimes"][r][key]
                  for r in regimes]
        cis = [block["regimes"][r]["ci95"].get(key) for r in regimes]
        errors = np.array([[v - c["low"], c["high"] - v] if c else [np.nan, np.nan]
                           for v, c in zip(values, cis)]).T
        ax.bar(regimes, values, color=colors, yerr=errors, capsize=6)
        ax.tick_params(axis="x", labelrotation=30 if len(regimes) > 4 else 0)
        ax.grid(axis="y", alpha=0.3)
    ax_mae.axhline(block["baseline_train_mean"]["mae"], color="grey", ls="--", lw=1,
                   label="training mean")
    ax_mae.set(ylabel=f"MAE ({block['unit']})", title="MAE (lower is better)")
    ax_mae.legend(loc="lower right", framealpha=0.9)
    ax_rho.set(ylabel="Spearman", title="Spearman (higher is better)",
               ylim=(min(0.0, ax_rho.get_ylim()[0]), 1.0))
    fig.suptitle(f"{task}: regimes on the target test split (n = {block['n']}, 95% bootstrap CI)")
    return fig


def read_curves(folder: Path) -> dict[str, pd.DataFrame]:
    """DVCLive's plots/metrics folder, which holds seed-{seed}/val/mae.tsv and so on per training
    seed, as {"val/mae": frame(step, seed-0, seed-1, ...), "train/mse": ...}."""
    columns: dict[str, list[pd.Series]] = {}
    for path in sorted(folder.rglob("*.tsv")):
        seed, *name = path.relative_to(folder).with_suffix("").parts
        if not seed.startswith("seed-"):  # a run logged without seeds
            seed, name = "value", [seed, *name]
        values = pd.read_csv(path, sep="\t").set_index("step").iloc[:, -1]
        columns.setdefault("/".join(name), []).append(values.rename(seed))
    return {name: pd.concat(series, axis=1).reset_index() for name, series in columns.items()}
