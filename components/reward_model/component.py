"""reward_model (VLM-RLAIF): the SFT model + LoRA + a scalar head, trained on the pairs."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def reward_model(config: str, parent_run: str, pipeline_run: str, model: Input[Model],
                 base_model: Input[Model], preferences: Input[Dataset],
                 reward_model: Output[Model],
                 out: Output[Dataset], metrics: Output[Metrics]):
    """Bradley-Terry on ``preferences``; held-out pairwise accuracy in ``out/metrics.json``; where
    ``pipeline.reward_model.launcher`` says (a TrainJob is named after ``pipeline_run``)."""
    import os

    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import METRICS
    from videostar.rlaif.steps import run_reward_model_step

    os.makedirs(out.path, exist_ok=True)
    result = run_reward_model_step(model.path, preferences.path, reward_model.path, f"{out.path}/{METRICS}",
                                   config_from_json(config), adapter_base=base_model.path,
                                   parent_run=parent_run, progress=False, pipeline_run=pipeline_run)
    log_metrics(metrics, result)
