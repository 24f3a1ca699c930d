"""evaluate: the configured benchmark suites on one model."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def evaluate(config: str, stage: str, parent_run: str, model: Input[Model], adapter_base: Input[Model],
             out: Output[Dataset], metrics: Output[Metrics], cycle: int = 0):
    """Score ``model`` at ``stage``: ``baseline`` (the base model), ``cycle`` (cycle ``cycle``'s
    SFT model, on the base model) or ``rlaif`` (the PPO policy, on the SFT model); ``cycle`` is
    read only at stage ``cycle`` (an optional int parameter is not supported by kfp.local)."""
    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.star.steps import evaluate as run

    scores = run(model.path, out.path, config_from_json(config), stage, cycle if stage == "cycle" else None,
                 adapter_base=adapter_base.path, parent_run=parent_run, progress=False)
    log_metrics(metrics, scores)
