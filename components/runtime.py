"""What every component does after its step: the step's numbers into KFP's ``Metrics`` artifact."""

from __future__ import annotations

from typing import Any


def log_metrics(artifact: Any, metrics: dict[str, Any]) -> None:
    """Log the scalar numbers of a step's metrics to a KFP ``Metrics`` artifact (the KFP UI's
    metrics tab)."""
    for key, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            artifact.log_metric(key, float(value))
