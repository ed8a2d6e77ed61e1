"""Plots the reports share. Each function draws on a given matplotlib Axes and returns it."""

from __future__ import annotations

import numpy as np


def memory_breakdown(ax, table, limit_gb=None, title: str = ""):
    """Stacked horizontal bars of GB per device by category, one bar per plan, with the
    device's usable limit drawn."""
    table.plot.barh(stacked=True, ax=ax, width=0.8, colormap="tab20")
    if limit_gb:
        ax.axvline(limit_gb, color="k", ls="--", lw=1, label=f"usable limit {limit_gb:.1f} GB")
    ax.set_xlabel("memory per device (GB)")
    ax.set_ylabel("")
    ax.set_title(title or "memory per device by category")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    ax.invert_yaxis()
    return ax


def training_curves(axes, records: list[dict], headline_keys: tuple[str, ...] = (), headline_label: str = ""):
    """Loss (total, and the task's headline score — the sum of ``headline_keys`` — with validation),
    learning rate, throughput and memory from ``metrics.jsonl`` records, on four axes."""
    steps = [r for r in records if "loss" in r]
    vals = [r for r in records if "val_loss" in r]
    rates = [r for r in records if "samples_per_s" in r]
    mem = [r for r in records if "cpu_rss_peak_gb" in r]

    def score(r: dict, prefix: str = "") -> float:
        return sum(r.get(f"{prefix}{k}", np.nan) for k in headline_keys)

    ax = axes[0]
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1, label="train loss")
    show_score = headline_keys and tuple(headline_keys) != ("loss",)
    if show_score:
        ax.plot([r["step"] for r in steps], [score(r) for r in steps], lw=1, label=f"train {headline_label}")
    if vals:
        ax.plot([r["step"] for r in vals], [r["val_loss"] for r in vals], "o-", label="val loss")
        if show_score:
            ax.plot([r["step"] for r in vals], [score(r, "val_") for r in vals], "s-", label=f"val {headline_label}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.legend(fontsize=7)
    axes[1].plot([r["step"] for r in steps], [r["lr"] for r in steps])
    axes[1].set_xlabel("optimizer step")
    axes[1].set_ylabel("learning rate")
    axes[1].set_title("schedule")
    axes[2].plot([r["step"] for r in rates], [r["samples_per_s"] for r in rates], "o-")
    axes[2].set_xlabel("optimizer step")
    axes[2].set_ylabel("samples / s")
    axes[2].set_ylim(bottom=0)
    with_mfu = [r for r in rates if "mfu" in r]
    if with_mfu:  # model FLOPs utilisation against the GPU's dense bf16 peak, on a second axis
        twin = axes[2].twinx()
        twin.plot([r["step"] for r in with_mfu], [100 * r["mfu"] for r in with_mfu], "s--", color="tab:red")
        twin.set_ylabel("MFU (%)", color="tab:red")
        twin.set_ylim(bottom=0)
    axes[2].set_title("throughput" + (" and MFU" if with_mfu else " (MFU: n/a without a known GPU peak)"))
    keys = sorted({k for r in mem for k in r if k.endswith("_gb") and ("rss" in k or "peak" in k)})
    style = "o-" if len(mem) > 4 else "o"  # a few samples: points, not a line that implies a trend
    for k in keys:
        axes[3].plot([r["step"] for r in mem], [r.get(k, np.nan) for r in mem], style, label=memory_label(k))
    axes[3].set_xlabel("optimizer step")
    axes[3].set_ylabel("GB")
    axes[3].set_ylim(bottom=0)
    axes[3].set_title(f"memory ({len(mem)} samples)")
    if keys:
        axes[3].legend(fontsize=8)
    for ax in axes:
        ax.title.set_fontsize(12)
        ax.xaxis.label.set_fontsize(10)
        ax.yaxis.label.set_fontsize(10)
    return axes


def memory_label(key: str) -> str:
    """A readable legend entry for a memory key of ``metrics.jsonl``."""
    if key == "cpu_rss_peak_gb":
        return "host process peak RSS"
    for suffix, text in (("_allocated_gb", "allocated"), ("_reserved_gb", "reserved"), ("_peak_gb", "peak allocated")):
        if key.startswith("gpu") and key.endswith(suffix):
            return f"GPU {key[3:-len(suffix)]} {text}"
    return key


def progress_table(records: list[dict], rows: int = 10):
    """A compact table of a training run from ``metrics.jsonl``: about ``rows`` evenly spaced logged
    steps with the training loss, the latest validation score at that step and samples/s."""
    import pandas as pd

    steps = [r for r in records if "loss" in r]
    vals = [r for r in records if "val_loss" in r]
    rates = {r["step"]: r["samples_per_s"] for r in records if "samples_per_s" in r}
    if not steps:
        return pd.DataFrame()
    pick = sorted({steps[int(round(i))]["step"] for i in np.linspace(0, len(steps) - 1, min(rows, len(steps)))})
    by_step = {r["step"]: r for r in steps}
    out = []
    for step in pick:
        val = [v for v in vals if v["step"] <= step]
        rate = [v for k, v in rates.items() if k <= step]
        out.append({"step": step, "train loss": round(by_step[step]["loss"], 4),
                    "validation loss": round(val[-1]["val_loss"], 4) if val else None,
                    "samples/s": round(rate[-1], 1) if rate else None})
    return pd.DataFrame(out).set_index("step")
