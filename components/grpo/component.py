"""grpo (RLAIF, ``rlaif.algorithm: grpo``): GRPO of the SFT model (+ LoRA) with the
Parser-Verifier's reward; ppo's inputs and outputs, so the pipeline swaps one for the other."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def grpo(config: str, parent_run: str, model: Input[Model], base_model: Input[Model],
         reward_model: Input[Model],
         records: Input[Dataset], preferences: Input[Dataset], policy: Output[Model],
         out: Output[Dataset], metrics: Output[Metrics]):
    """The policy into ``policy``; checkpoints (a retried task resumes from them) and every
    step's statistics in ``out``; ``reward_model`` is read only when
    ``rlaif.grpo.reward_model_weight`` mixes it in."""
    import os

    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import METRICS, records_file
    from videostar.rlaif.steps import grpo as run

    os.makedirs(out.path, exist_ok=True)
    result = run(model.path, reward_model.path, records_file(records.path), preferences.path, policy.path,
                 f"{out.path}/{METRICS}", config_from_json(config), adapter_base=base_model.path,
                 parent_run=parent_run, progress=False)
    log_metrics(metrics, result)
