"""sft: instruction-tune the base model on every verified answer and rationale of a cycle."""

from typing import List

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def sft(config: str, cycle: int, parent_run: str, pipeline_run: str, base_model: Input[Model],
        verification: Input[Dataset], rationales: Input[List[Dataset]], model: Output[Model],
        out: Output[Dataset], metrics: Output[Metrics]):
    """Always from the base model (Video-STaR): the adapter (or full weights) into ``model``;
    with ``pipeline.sft.launcher.kind: trainjob`` as a Kubeflow TrainJob named after
    ``pipeline_run`` and ``cycle``."""
    import os

    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import METRICS
    from videostar.star.steps import sft as run
    from videostar.star.steps import training_files

    os.makedirs(out.path, exist_ok=True)
    cfg = config_from_json(config)
    files = training_files(verification.path, [r.path for r in rationales])
    if cfg.pipeline.sft.launcher.kind == "trainjob":
        from videostar.training import trainjob

        result = trainjob.sft(cfg, pipeline_run, cycle, base_model.path, files, model.path,
                              f"{out.path}/{METRICS}", parent_run=parent_run)
    else:
        result = run(base_model.path, files, model.path, f"{out.path}/{METRICS}", cfg, progress=False,
                     parent_run=parent_run, cycle=cycle)
    log_metrics(metrics, result)
