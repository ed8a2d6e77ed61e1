"""The verdict of a training run (notebook 03): did the loss go down, and did validation keep up."""

from __future__ import annotations

from typing import Any

PLATEAU_FRACTION = 0.5  # best validation in the first half of the run and still not improving: over-fitting


def training_verdict(result: dict[str, Any], records: list[dict]) -> tuple[str, str, str]:
    """(status, finding, next action) of a run from its ``train_result.json`` and ``metrics.jsonl``.

    FAIL: no checkpoint, non-finite or diverged. WARN: the training loss did not go down, or the best
    validation came in the first half of the run and the last validations did not improve on it
    (the run kept training past its best model). PASS otherwise."""
    steps = [r for r in records if "loss" in r]
    k = min(10, max(1, len(steps) // 2))
    first = sum(r["loss"] for r in steps[:k]) / k if steps else float("nan")
    last = sum(r["loss"] for r in steps[-k:]) / k if steps else float("nan")
    went_down = last < first
    step, best, best_val = result["step"], result.get("best_step"), result.get("best_val")
    start = result.get("start_step") or 0
    finding = f"{step} steps ({result['stopped_because']}); training loss {first:.3f} -> {last:.3f}"
    if best is not None and best_val is not None:
        finding += f"; best validation {best_val:.4f} at step {best} (the checkpoint 04 evaluates)"
    if not result.get("checkpoints") or result["stopped_because"] in ("non_finite", "diverged"):
        return ("FAIL", finding + "; " + ("no checkpoint written" if not result.get("checkpoints") else
                                         f"stopped: {result['stopped_because']}"),
                "lower learning_rate (e.g. halve it) and run 03 again; check 01's data report for NaN or outliers")
    if not went_down:
        return ("WARN", finding + " — the training loss did not go down",
                "raise learning_rate or max_steps, or check 01's data report: the model is not learning")
    stale = result.get("vals_without_improvement") or 0
    if best is not None and step > start and best - start < PLATEAU_FRACTION * (step - start) and stale >= 2:
        saved = 100 * (step - best) / max(step, 1)
        return ("WARN", finding + f" — validation stopped improving at step {best} of {step} ({stale} validations "
                                  f"without improvement since); stopping there would have saved {saved:.0f}% of the steps",
                f"set max_steps near {int(best * 1.2)} or early_stopping_patience lower; against over-fitting, more "
                f"training data (for gas detection: gas_atmospheres) helps more than more steps")
    return "PASS", finding, ""
