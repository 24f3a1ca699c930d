"""One Video-STaR cycle as a sub-pipeline: generate -> verify -> rationalize -> sft (-> evaluate)
-> decide.

KFP v2 has no recursion, so the cycles are unrolled at compile time (:mod:`self_training`): the
pipeline calls cycle 0's graph, and inside ``dsl.If(cycle k said continue)`` the graph of cycle
k+1; the RLAIF stage where the cycles stop. Each cycle's graph returns its decision, its model
and its decision record for the next one. The graphs are siblings, not nested in one another:
the KFP compiler copies a sub-pipeline's whole spec into its parent, so cycle k holding cycle k+1
made compiling cubic in the cycles. The KFP UI shows each cycle as one collapsible node.
Generation and rationalization fan out over ``num_shards`` with ``dsl.ParallelFor`` and are
gathered with ``dsl.Collected``. Every SFT starts from the base model; a cycle generates with the
model the cycle before handed on: the chosen one so far (``decide.select``), by default the last.

No ``from __future__ import annotations`` here: KFP reads the graph's parameter types.
"""

from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model
from videostar.components import Components
from videostar.pipelines.scheduling import schedule

from videostar.config import RunConfig


class CycleOutputs(NamedTuple):
    """What a cycle hands on: decide's verdict (continue?), the chosen cycle's SFT model (this
    cycle's, or an earlier one that is better on ``decide.select``), decide's record.

    The verdict is named ``Output``: kfp.local (2.17) resolves a condition on a task's output
    only under that name."""

    Output: bool
    model: Model
    decision: Dataset


def star_cycle(k: int, cfg: RunConfig, ops: Components) -> Any:
    """The graph of cycle ``k``."""
    p = cfg.pipeline
    shards = list(range(p.num_shards))

    @dsl.pipeline(name=f"cycle-{k}", description=f"Video-STaR cycle {k}")
    def cycle(config: str, parent_run: str, model: Input[Model], base_model: Input[Model],
              records: Input[Dataset], previous: Input[Dataset]) -> CycleOutputs:
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
        if cfg.evaluate.suites:
            ev = schedule(ops.evaluate(config=config, stage="cycle", cycle=k, parent_run=parent_run,
                                       model=sft.outputs["model"], adapter_base=base_model),
                          p.generate, p)
            ev.set_display_name(f"cycle-{k}-evaluate")
            evaluation["evaluation"] = ev.outputs["out"]
        dec = schedule(ops.decide(config=config, cycle=k, parent_run=parent_run,
                                  verification=ver.outputs["out"],
                                  rationales=dsl.Collected(rat.outputs["out"]),
                                  training=sft.outputs["out"], model=sft.outputs["model"],
                                  handed_on=model, previous=previous, **evaluation), p.decide, p)
        dec.set_display_name(f"cycle-{k}-decide")
        return CycleOutputs(Output=dec.outputs["Output"], model=dec.outputs["chosen"],
                            decision=dec.outputs["out"])

    return cycle
