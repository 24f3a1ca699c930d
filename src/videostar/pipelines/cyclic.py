"""The cyclic self-training pipeline: Video-STaR cycles unrolled at compile time.

KFP v2 has no recursion, so cycle k+1 is nested in ``dsl.If(cycle k decided to continue)``,
up to ``decide.max_cycles``. Generation and rationalization fan out over ``num_shards`` with
``dsl.ParallelFor`` and are gathered with ``dsl.Collected``. Every SFT starts from the base
checkpoint; a cycle generates with the previous cycle's model. With evaluation suites
configured, the base model is evaluated once and every cycle's model after its SFT. With
``rlaif.enabled`` the RLAIF stage follows the cycle where the cycles stop (compiled into each
cycle's stop branch), and its PPO policy is evaluated like a cycle's model.

No ``from __future__ import annotations`` here: KFP reads the pipeline's parameter types.
"""


from typing import Any

from kfp import dsl, kubernetes
from kfp.dsl import Dataset, Model

from videostar.config import PipelineConfig, RunConfig, StepResources, config_to_json
from videostar.pipelines.components import Components, build_components


def schedule(task: Any, res: StepResources, pipeline: PipelineConfig) -> Any:
    """Apply a step's resources, node pool, secrets, volumes, retries and caching to a task."""
    if res.accelerator_type and res.accelerator_count:
        task.set_accelerator_type(res.accelerator_type)
        task.set_accelerator_limit(res.accelerator_count)
    if res.cpu:
        task.set_cpu_request(res.cpu).set_cpu_limit(res.cpu)
    if res.memory:
        task.set_memory_request(res.memory).set_memory_limit(res.memory)
    for key, value in res.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for tol in res.tolerations:
        kubernetes.add_toleration(task, key=tol.key, operator=tol.operator, value=tol.value,
                                  effect=tol.effect)
    if res.shm_size:
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm",
                                   medium="Memory", size_limit=res.shm_size)
    if pipeline.pvc:
        kubernetes.mount_pvc(task, pvc_name=pipeline.pvc, mount_path=pipeline.pvc_mount)
    for secret in pipeline.secrets:
        kubernetes.use_secret_as_env(task, secret_name=secret.secret,
                                     secret_key_to_env=secret.env)
    # the step images run as uid 10001; say so in the pod spec too, so non-root is enforced
    kubernetes.set_security_context(task, run_as_user=10001, run_as_group=10001, run_as_non_root=True)
    if res.retries:
        task.set_retry(num_retries=res.retries, backoff_duration=res.backoff, backoff_factor=2.0)
    task.set_caching_options(res.cache)
    return task


def _cycle(k: int, ops: Components, cfg: RunConfig, config: Any, start: Any, model: Any, base: Any,
           records: Any, previous: Any = None) -> None:
    p = cfg.pipeline
    shards = list(range(p.num_shards))
    with dsl.ParallelFor(items=shards, parallelism=p.num_shards) as shard:
        gen = schedule(ops.generate(config=config, model=model, base=base, records=records,
                                    shard=shard, num_shards=p.num_shards), p.generate, p)
        gen.set_display_name(f"cycle-{k}-generate").after(start)
    ver = schedule(ops.verify(config=config, answers=dsl.Collected(gen.outputs["out"])), p.verify, p)
    ver.set_display_name(f"cycle-{k}-verify")
    with dsl.ParallelFor(items=shards, parallelism=p.num_shards) as shard:
        rat = schedule(ops.rationalize(config=config, model=model, base=base,
                                       verification=ver.outputs["out"], shard=shard,
                                       num_shards=p.num_shards), p.rationalize, p)
        rat.set_display_name(f"cycle-{k}-rationalize")
    # one Collected per consumer: the KFP compiler cannot share one between two tasks
    sft = schedule(ops.sft(config=config, cycle=k, parent_run=start.output, base=base,
                           verification=ver.outputs["out"],
                           rationales=dsl.Collected(rat.outputs["out"])), p.sft, p)
    sft.set_display_name(f"cycle-{k}-sft")
    optional = {} if previous is None else {"previous": previous}
    if cfg.evaluation.suites:
        ev = schedule(ops.evaluate(config=config, cycle=k, parent_run=start.output,
                                   model=sft.outputs["model"], base=base), p.generate, p)
        ev.set_display_name(f"cycle-{k}-evaluate")
        optional["evaluation"] = ev.outputs["out"]
    dec = schedule(ops.decide(config=config, cycle=k, parent_run=start.output,
                              verification=ver.outputs["out"],
                              rationales=dsl.Collected(rat.outputs["out"]),
                              training=sft.outputs["out"], model=sft.outputs["model"], **optional),
                   p.decide, p)
    dec.set_display_name(f"cycle-{k}-decide")
    if k + 1 < cfg.decide.max_cycles:
        with dsl.If(dec.outputs["Output"] == True, name=f"cycle-{k + 1}"):  # noqa: E712
            _cycle(k + 1, ops, cfg, config, start, sft.outputs["model"], base, records,
                   dec.outputs["out"])
        if cfg.rlaif.enabled:  # the cycles stop here: align this cycle's model
            with dsl.If(dec.outputs["Output"] == False, name=f"rlaif-after-cycle-{k}"):  # noqa: E712
                rlaif_stage(ops, cfg, config, start, sft.outputs["model"], base, records, dec)
    elif cfg.rlaif.enabled:  # the last cycle the budget allows
        rlaif_stage(ops, cfg, config, start, sft.outputs["model"], base, records, dec)


def rlaif_stage(ops: Components, cfg: RunConfig, config: Any, start: Any, sft_model: Any, base: Any,
                records: Any, after: Any = None) -> Any:
    """VLM-RLAIF on ``sft_model``: preferences, reward model, PPO, and the PPO policy evaluated."""
    p = cfg.pipeline
    prefs = schedule(ops.preferences(config=config, parent_run=start.output, model=sft_model,
                                     base=base, records=records), p.preferences, p)
    prefs.set_display_name("rlaif-preferences").after(after if after is not None else start)
    rm = schedule(ops.reward_model(config=config, parent_run=start.output, model=sft_model, base=base,
                                   preferences=prefs.outputs["out"]), p.reward, p)
    rm.set_display_name("rlaif-reward-model")
    ppo = schedule(ops.ppo(config=config, parent_run=start.output, model=sft_model, base=base,
                           reward=rm.outputs["reward"], records=records,
                           preferences=prefs.outputs["out"]), p.ppo, p)
    ppo.set_display_name("rlaif-ppo")
    if cfg.evaluation.suites:
        ev = schedule(ops.evaluate(config=config, cycle=-1, parent_run=start.output,
                                   model=ppo.outputs["policy"], base=sft_model, stage="rlaif"),
                      p.generate, p)
        ev.set_display_name("rlaif-evaluate")
    return ppo


def build_pipeline(cfg: RunConfig) -> Any:
    """The pipeline function for ``cfg``: its parameters default to the config's values.

    With ``rlaif.sft_model`` set it is the RLAIF stage alone, on that model.
    """
    ops = build_components(cfg.pipeline.images)
    if cfg.rlaif.sft_model:
        return _rlaif_pipeline(cfg, ops)

    @dsl.pipeline(name=cfg.pipeline.name,
                  description="Video-STaR self-training: generate, verify, rationalize, SFT, decide")
    def videostar_self_training(
        base_model: str = cfg.pipeline.base_model,
        dataset: str = cfg.pipeline.dataset,
        config: str = config_to_json(cfg),
    ):
        base, data, start = _inputs(cfg, ops, config, base_model, dataset)
        if cfg.evaluation.suites:  # the baseline: the base model before any cycle
            baseline = schedule(ops.evaluate(config=config, cycle=-1, parent_run=start.output,
                                             model=base.output, base=base.output),
                                cfg.pipeline.generate, cfg.pipeline)
            baseline.set_display_name("baseline-evaluate")
        _cycle(0, ops, cfg, config, start, base.output, base.output, data.output)

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


def _rlaif_pipeline(cfg: RunConfig, ops: Components) -> Any:
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
        rlaif_stage(ops, cfg, config, start, sft.output, base.output, data.output)

    return videostar_rlaif
