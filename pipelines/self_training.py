"""The self-training pipeline users submit: inputs, the baseline, the Video-STaR cycles, RLAIF.

Read top to bottom: the base model and dataset are imported, ``start`` checks tracking and opens
the MLflow run, the base model is evaluated once (with evaluation suites configured), then
cycle 0's sub-pipeline runs, and each next cycle's inside ``dsl.If(the cycle before said
continue)`` (see :mod:`star_cycle`); the RLAIF stage (:mod:`rlaif_stage`) follows the cycle where
the cycles stop. With ``rlaif.sft_model`` set
the pipeline is the RLAIF stage alone, on that model.

No ``from __future__ import annotations`` here: KFP reads the pipeline's parameter types.
"""

import contextlib
from typing import Any

from kfp import dsl
from kfp.dsl import Dataset, Model
from videostar.components import Components, build_components
from videostar.pipelines.rlaif_stage import rlaif_stage
from videostar.pipelines.scheduling import schedule
from videostar.pipelines.star_cycle import star_cycle

from videostar.config import RunConfig, config_to_json


def build_pipeline(cfg: RunConfig) -> Any:
    """The pipeline function for ``cfg``: its parameters default to the config's values."""
    ops = build_components(cfg.pipeline.images)
    if cfg.rlaif.sft_model:
        return _rlaif_pipeline(cfg, ops, rlaif_stage(cfg, ops))
    n = cfg.decide.max_cycles
    cycles = [star_cycle(k, cfg, ops) for k in range(n)]
    rlaif = [rlaif_stage(cfg, ops, after=f"cycle-{k}") for k in range(n)] if cfg.rlaif.enabled else []

    @dsl.pipeline(name=cfg.pipeline.name,
                  description="Video-STaR self-training: generate, verify, rationalize, SFT, decide")
    def videostar_self_training(
        base_model: str = cfg.pipeline.base_model,
        dataset: str = cfg.pipeline.dataset,
        config: str = config_to_json(cfg),
    ):
        base, data, start = _inputs(cfg, ops, config, base_model, dataset)
        parent_run = start.outputs["Output"]
        if cfg.evaluate.suites:  # the baseline: the base model before any cycle
            baseline = schedule(ops.evaluate(config=config, stage="baseline", parent_run=parent_run,
                                             model=base.output, adapter_base=base.output),
                                cfg.pipeline.generate, cfg.pipeline)
            baseline.set_display_name("baseline-evaluate")
        model, previous, proceed = base.output, start.outputs["out"], None
        with contextlib.ExitStack() as nested:  # cycle k+1 inside "cycle k said continue"
            for k, cycle in enumerate(cycles):
                if proceed is not None:
                    nested.enter_context(dsl.If(proceed == True, name=f"continue-after-cycle-{k - 1}"))  # noqa: E712
                task = cycle(config=config, parent_run=parent_run, model=model, base_model=base.output,
                             records=data.output, previous=previous)
                task.set_display_name(f"cycle {k}")
                model, previous, proceed = (task.outputs["model"], task.outputs["decision"],
                                            task.outputs["Output"])
                if rlaif:  # where the cycles stop (decide says so, or the budget), align the model
                    with (dsl.If(proceed == False, name=f"stop-after-cycle-{k}")  # noqa: E712
                          if k < n - 1 else contextlib.nullcontext()):
                        rlaif[k](config=config, parent_run=parent_run, sft_model=model,
                                 base_model=base.output, records=data.output).set_display_name("VLM-RLAIF")

    return videostar_self_training


def _inputs(cfg: RunConfig, ops: Components, config: Any, base_model: Any, dataset: Any
            ) -> tuple[Any, Any, Any]:
    """The imported base model and dataset, and the tracking start task."""
    base = dsl.importer(artifact_uri=base_model, artifact_class=Model, reimport=False)
    base.set_display_name("base-model")
    data = dsl.importer(artifact_uri=dataset, artifact_class=Dataset, reimport=False)
    data.set_display_name("dataset")
    start = schedule(ops.start(config=config, pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER),
                     cfg.pipeline.decide, cfg.pipeline)
    start.set_display_name("track-start").set_caching_options(False)
    return base, data, start


def _rlaif_pipeline(cfg: RunConfig, ops: Components, rlaif: Any) -> Any:
    @dsl.pipeline(name=cfg.pipeline.name,
                  description="VLM-RLAIF on a self-trained model: preferences, reward model, PPO")
    def videostar_rlaif(
        base_model: str = cfg.pipeline.base_model,
        sft_model: str = cfg.rlaif.sft_model,
        dataset: str = cfg.pipeline.dataset,
        config: str = config_to_json(cfg),
    ):
        base, data, start = _inputs(cfg, ops, config, base_model, dataset)
        sft = dsl.importer(artifact_uri=sft_model, artifact_class=Model, reimport=False)
        sft.set_display_name("sft-model")
        rlaif(config=config, parent_run=start.outputs["Output"], sft_model=sft.output,
              base_model=base.output, records=data.output).set_display_name("VLM-RLAIF")

    return videostar_rlaif
