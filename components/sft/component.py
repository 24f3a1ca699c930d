"""sft: instruction-tune the base model on every verified answer and rationale of a cycle."""

from typing import List

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def sft(config: str, cycle: int, parent_run: str, pipeline_run: str, base_model: Input[Model],
        verification: Input[Dataset], rationales: Input[List[Dataset]], model: Output[Model],
        out: Output[Dataset], metrics: Output[Metrics]):
    """Always from the base model (Video-STaR): the adapter (or full weights) into ``model``;
    where ``pipeline.sft.launcher`` says (a TrainJob is named after ``pipeline_run`` and
    ``cycle``)."""
    import os

    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import METRICS
    from videostar.star.steps import run_sft_step, training_files

    os.makedirs(out.path, exist_ok=True)
    files = training_files(verification.path, [r.path for r in rationales])
    result = run_sft_step(base_model.path, files, model.path, f"{out.path}/{METRICS}",
                          config_from_json(config), progress=False, parent_run=parent_run, cycle=cycle,
                          pipeline_run=pipeline_run)
    log_metrics(metrics, result)
