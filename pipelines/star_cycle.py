"""One Video-STaR cycle as a sub-pipeline: generate -> verify -> rationalize -> sft (-> evaluate)
-> decide, and what follows it.

KFP v2 has no recursion, so the cycles are unrolled at compile time: cycle k's graph holds, in
``dsl.If(decide said continue)``, the graph of cycle k+1, and in the stop branch the RLAIF stage
(when enabled). The KFP UI shows each cycle as one collapsible node inside the one before it.
Generation and rationalization fan out over ``num_shards`` with ``dsl.ParallelFor`` and are
gathered with ``dsl.Collected``. Every SFT starts from the base model; a cycle generates with
the previous cycle's model.

No ``from __future__ import annotations`` here: KFP reads the graph's parameter types.
"""

from typing import Any

from kfp import dsl
from kfp.dsl import Dataset, Input, Model
from videostar.components import Components
from videostar.pipelines.rlaif_stage import rlaif_stage
from videostar.pipelines.scheduling import schedule

from videostar.config import RunConfig


def star_cycle(k: int, cfg: RunConfig, ops: Components, next_cycle: Any = None) -> Any:
    """The graph of cycle ``k``; ``next_cycle`` (the graph of cycle k+1, or None at the cycle
    budget) runs when decide says continue, the RLAIF stage (when enabled) when the cycles stop
    here."""
    p = cfg.pipeline
    rlaif = rlaif_stage(cfg, ops, after=f"cycle-{k}") if cfg.rlaif.enabled else None
    shards = list(range(p.num_shards))

    @dsl.pipeline(name=f"cycle-{k}", description=f"Video-STaR cycle {k}")
    def cycle(config: str, parent_run: str, model: Input[Model], base_model: Input[Model],
              records: Input[Dataset], previous: Input[Dataset]):
        with dsl.ParallelFor(items=shards, parallelism=p.num_shards) as shard:
            gen = schedule(ops.generate(config=config, model=model, base_model=base_model,
                                        records=records, shard=shard, num_shards=p.num_shards),
                           p.generate, p)
            gen.set_display_name(f"cycle-{k}-generate")
        ver = schedule(ops.verify(config=config, answers=dsl.Collected(gen.outputs["out"])), p.verify, p)
        ver.set_display_name(f"cycle-{k}-verify")
        with dsl.ParallelFor(items=shards, parallelism=p.num_shards) as shard:
            rat = schedule(ops.rationalize(config=config, model=model, base_model=base_model,
                                           verification=ver.outputs["out"], shard=shard,
                                           num_shards=p.num_shards), p.rationalize, p)
            rat.set_display_name(f"cycle-{k}-rationalize")
        # one Collected per consumer: the KFP compiler cannot share one between two tasks
        sft = schedule(ops.sft(config=config, cycle=k, parent_run=parent_run,
                               pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, base_model=base_model,
                               verification=ver.outputs["out"],
                               rationales=dsl.Collected(rat.outputs["out"])), p.sft, p)
        sft.set_display_name(f"cycle-{k}-sft")
        evaluation = {}
        if cfg.evaluation.suites:
            ev = schedule(ops.evaluate(config=config, stage="cycle", cycle=k, parent_run=parent_run,
                                       model=sft.outputs["model"], adapter_base=base_model),
                          p.generate, p)
            ev.set_display_name(f"cycle-{k}-evaluate")
            evaluation["evaluation"] = ev.outputs["out"]
        dec = schedule(ops.decide(config=config, cycle=k, parent_run=parent_run,
                                  verification=ver.outputs["out"],
                                  rationales=dsl.Collected(rat.outputs["out"]),
                                  training=sft.outputs["out"], model=sft.outputs["model"],
                                  previous=previous, **evaluation), p.decide, p)
        dec.set_display_name(f"cycle-{k}-decide")
        inputs = {"config": config, "parent_run": parent_run, "base_model": base_model, "records": records}
        if next_cycle is not None:
            with dsl.If(dec.outputs["Output"] == True, name=f"continue-after-cycle-{k}"):  # noqa: E712
                nxt = next_cycle(model=sft.outputs["model"], previous=dec.outputs["out"], **inputs)
                nxt.set_display_name(f"cycle {k + 1}")
            if rlaif is not None:  # the cycles stop here: align this cycle's model
                with dsl.If(dec.outputs["Output"] == False, name=f"stop-after-cycle-{k}"):  # noqa: E712
                    rlaif(sft_model=sft.outputs["model"], **inputs).set_display_name("VLM-RLAIF")
        elif rlaif is not None:  # the last cycle the budget allows
            rlaif(sft_model=sft.outputs["model"], **inputs).set_display_name("VLM-RLAIF")

    return cycle
