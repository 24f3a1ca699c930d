"""reward_model (VLM-RLAIF): the SFT model + LoRA + a scalar head, trained on the pairs."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def reward_model(config: str, parent_run: str, pipeline_run: str, model: Input[Model],
                 base_model: Input[Model], preferences: Input[Dataset],
                 reward_model: Output[Model],
                 out: Output[Dataset], metrics: Output[Metrics]):
    """Bradley-Terry on ``preferences``; held-out pairwise accuracy in ``out/metrics.json``; with
    ``pipeline.reward_model.launcher.kind: trainjob`` as a Kubeflow TrainJob named after
    ``pipeline_run``."""
    import os

    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import METRICS
    from videostar.rlaif.steps import reward_model as run

    os.makedirs(out.path, exist_ok=True)
    cfg = config_from_json(config)
    if cfg.pipeline.reward_model.launcher.kind == "trainjob":
        from videostar.training import trainjob

        result = trainjob.reward_model(cfg, pipeline_run, parent_run, model.path, base_model.path,
                                       preferences.path, reward_model.path, f"{out.path}/{METRICS}")
    else:
        result = run(model.path, preferences.path, reward_model.path, f"{out.path}/{METRICS}", cfg,
                     adapter_base=base_model.path, parent_run=parent_run, progress=False)
    log_metrics(metrics, result)
