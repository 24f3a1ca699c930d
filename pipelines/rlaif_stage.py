"""The VLM-RLAIF stage as a sub-pipeline: preferences -> reward model -> PPO or GRPO
(``rlaif.algorithm``) (-> evaluate).

It aligns the model where the Video-STaR cycles stop (or, stand-alone, a given SFT model); the
policy is evaluated like a cycle's model. With GRPO the reward model is still trained: its
held-out accuracy is reported, and its score is mixed in when ``rlaif.grpo.reward_model_weight``
says so.

No ``from __future__ import annotations`` here: KFP reads the graph's parameter types.
"""

from typing import Any

from kfp import dsl
from kfp.dsl import Dataset, Input, Model
from videostar.components import Components
from videostar.pipelines.scheduling import schedule

from videostar.config import RunConfig


def rlaif_stage(cfg: RunConfig, ops: Components, after: str = "") -> Any:
    """The RLAIF stage's graph for ``cfg``; ``after`` names where it runs (e.g. ``cycle-2``).

    Each place the stage runs gets a graph of its own name: the KFP compiler numbers a graph
    used in several places in an order that changes from run to run, which would make the
    compiled pipeline (committed under ``manifests/``) differ on every compile.
    """
    p = cfg.pipeline
    name = f"vlm-rlaif-after-{after}" if after else "vlm-rlaif"

    @dsl.pipeline(name=name, description="VLM-RLAIF: preferences, reward model, PPO")
    def rlaif(config: str, parent_run: str, sft_model: Input[Model], base_model: Input[Model],
              records: Input[Dataset]):
        prefs = schedule(ops.preferences(config=config, parent_run=parent_run, model=sft_model,
                                         base_model=base_model, records=records), p.preferences, p)
        prefs.set_display_name("rlaif-preferences")
        rm = schedule(ops.reward_model(config=config, parent_run=parent_run,
                                       pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, model=sft_model,
                                       base_model=base_model, preferences=prefs.outputs["out"]),
                      p.reward_model, p)
        rm.set_display_name("rlaif-reward-model")
        if cfg.rlaif.algorithm == "grpo":  # ppo's inputs and outputs; the verifier's reward
            rl = schedule(ops.grpo(config=config, parent_run=parent_run, model=sft_model,
                                   base_model=base_model, reward_model=rm.outputs["reward_model"],
                                   records=records, preferences=prefs.outputs["out"]), p.ppo, p)
            rl.set_display_name("rlaif-grpo")
        else:
            rl = schedule(ops.ppo(config=config, parent_run=parent_run,
                                  pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, model=sft_model,
                                  base_model=base_model, reward_model=rm.outputs["reward_model"],
                                  records=records, preferences=prefs.outputs["out"]), p.ppo, p)
            rl.set_display_name("rlaif-ppo")
        if cfg.evaluate.suites:
            ev = schedule(ops.evaluate(config=config, stage="rlaif", parent_run=parent_run,
                                       model=rl.outputs["policy"], adapter_base=sft_model),
                          p.generate, p)
            ev.set_display_name("rlaif-evaluate")

    return rlaif
