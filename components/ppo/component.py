"""ppo (VLM-RLAIF): PPO of the SFT model (+ LoRA) against the reward model."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def ppo(config: str, parent_run: str, pipeline_run: str, model: Input[Model], base_model: Input[Model],
        reward_model: Input[Model],
        records: Input[Dataset], preferences: Input[Dataset], policy: Output[Model],
        out: Output[Dataset], metrics: Output[Metrics]):
    """The policy into ``policy``; checkpoints (a retried task resumes from them) and every
    step's statistics in ``out``; where ``pipeline.ppo.launcher`` says (a TrainJob is named after
    ``pipeline_run``)."""
    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import METRICS, records_file
    from videostar.rlaif.steps import ppo as run

    result = run(model.path, reward_model.path, records_file(records.path), preferences.path, policy.path,
                 f"{out.path}/{METRICS}", config_from_json(config), adapter_base=base_model.path,
                 parent_run=parent_run, progress=False, pipeline_run=pipeline_run)
    log_metrics(metrics, result)
