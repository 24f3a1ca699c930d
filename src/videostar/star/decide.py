"""The end of a Video-STaR cycle: its yields (``summarize_cycle``) and whether another cycle runs
(``decide``)."""

from __future__ import annotations

from typing import Any

from videostar.config import DecideConfig


def summarize_cycle(
    cycle: int, verify: dict[str, Any], rationalize: list[dict[str, Any]]
) -> dict[str, Any]:
    """Answer-generation, rationalization and total yield of a cycle, overall and per label type.

    Yields are fractions of the cycle's questions; the rationalization yield is the fraction
    of rejected questions that a hinted rationale recovered. ``rationalize`` holds the metrics
    of every rationalization shard (none when rationalization was skipped).
    """
    total = verify["total"]
    answered = verify["passed"]
    rationalized = sum(m["passed"] for m in rationalize)
    return {
        "cycle": cycle,
        "questions": total,
        "answered": answered,
        "rationalized": rationalized,
        "answer_yield": _ratio(answered, total),
        "rationalization_yield": _ratio(rationalized, total - answered),
        "total_yield": _ratio(answered + rationalized, total),
        "per_label_type": _yields(verify, rationalize, "per_label_type"),
        "per_task": _yields(verify, rationalize, "per_task"),
        "per_group": _yields(verify, rationalize, "per_group"),
    }


def decide(history: list[dict[str, Any]], cfg: DecideConfig) -> dict[str, Any]:
    """Continue while under the cycle budget, ``metric`` still improves by ``min_delta`` and, with
    ``select`` set, the validation number has had a new best within ``patience`` cycles.

    ``chosen`` is the cycle handed on (:func:`chosen_cycle`).
    """
    if not history:
        return {"continue": True, "reason": "no cycle has run yet", "cycles": 0}
    values = _values(history, cfg.metric)
    chosen = chosen_cycle(history, cfg)
    done = len(history)
    state = {"cycles": done, cfg.metric: values[-1], "chosen": chosen}
    if cfg.select is not None:
        state[cfg.select] = history[chosen][cfg.select]
    if done >= cfg.max_cycles:
        return {"continue": False, "reason": f"cycle budget of {cfg.max_cycles} reached", **state}
    if cfg.select is not None and done - 1 - chosen >= cfg.patience:
        return {"continue": False,
                "reason": f"{cfg.select} has not improved for {done - 1 - chosen} cycle(s) (best: "
                          f"cycle {chosen}, {history[chosen][cfg.select]:.4f})", **state}
    if done >= 2 and values[-1] - values[-2] < cfg.min_delta:
        return {"continue": False,
                "reason": f"{cfg.metric} plateaued ({values[-2]:.4f} -> {values[-1]:.4f}, "
                          f"min_delta {cfg.min_delta})", **state}
    return {"continue": True, "reason": f"{cfg.metric} {values[-1]:.4f}, still improving", **state}


def chosen_cycle(history: list[dict[str, Any]], cfg: DecideConfig) -> int:
    """The cycle handed on: the best on ``select`` (ties: the earlier, trained on less of the
    model's own output), else the last."""
    if cfg.select is None:
        return len(history) - 1
    values = _values(history, cfg.select)
    return values.index(max(values))


def _values(history: list[dict[str, Any]], metric: str) -> list[float]:
    values = [h.get(metric) for h in history]
    if any(v is None for v in values):
        missing = next(i for i, v in enumerate(values) if v is None)
        raise KeyError(f"cycle {missing} has no metric {metric!r}")
    return values


def _yields(verify: dict[str, Any], rationalize: list[dict[str, Any]], table: str
            ) -> dict[str, dict[str, float]]:
    """Answer and total yield per key of one of verify's tables (``per_task``: e.g. STEP's
    question types; ``per_group``: its path lengths)."""
    out = {}
    for key, counts in verify.get(table, {}).items():
        extra = sum(m.get(table, {}).get(key, {}).get("passed", 0) for m in rationalize)
        out[key] = {"total": counts["total"],
                    "answer_yield": _ratio(counts["passed"], counts["total"]),
                    "total_yield": _ratio(counts["passed"] + extra, counts["total"])}
    return out


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0
