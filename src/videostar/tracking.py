"""MLflow tracking of the self-training cycles, with run outputs copied to the object store.

One parent run per pipeline run, one nested run per cycle. Under KFP's MLflow plugin (KFP 2.17)
the parent is the plugin's own run of the pipeline: the plugin nests one run per task under it
and gives each task ``MLFLOW_RUN_ID`` = that task's run and ``MLFLOW_EXPERIMENT_ID``, so the
pipeline's run is found by following ``mlflow.parentRunId`` up from the task's run; the plugin's
runs are never closed here. Per cycle: yields and training metrics (``step=cycle``, on
the cycle run and on the parent, so the parent's charts show the trend), the training data as an
MLflow dataset whose source is its object-store URI, the adapter as an MLflow 3 LoggedModel
(``cycle-<k>``: the run's output, its metrics linked to it and to the dataset) registered as a
version aliased ``candidate``, ``champion`` moved to the top of :func:`ranked_models`, plots of the
history, and a table of accepted and rejected answers with the verifier's reasons. RLAIF's reward
model and PPO policy are LoggedModels of the RLAIF run the same way.
Steps log through a :class:`Tracker` (a :class:`NullTracker` when tracking is off); they hold no
logging code of their own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from videostar.config import RunConfig, TrackingConfig
from videostar.errors import VideostarError, first_line
from videostar.layout import BASELINE, CYCLE_TAG, RLAIF
from videostar.store import Store, open_store, scoped_key

PARENT_TAG = "videostar.pipeline_run"
NESTED_TAG = "mlflow.parentRunId"
PARENT_RUN_TAG = "videostar.parent_run"
"""On every LoggedModel: the parent run it belongs to, which :func:`ranked_models` filters on."""
SFT_MODEL, REWARD_MODEL, POLICY_MODEL = "sft-adapter", "reward-model", "rl-policy"
"""LoggedModel types (``model_type``): a cycle's SFT adapter, RLAIF's reward model and policy."""
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
"""MLflow 3's UI opens an experiment without a kind in its GenAI view (traces), which hides the
cycle runs; this kind opens it on "Model training", i.e. the runs, metrics and tables."""
SCORE_PREFIXES = ("eval.", "val.")
"""A model's own scores: reported held-out (``eval.``) and validation (``val.``) suites."""
UI = "http://127.0.0.1:5000"
"""Where ``mlflow ui`` serves a local (sqlite) store."""

# An unreachable server must fail in seconds, not after MLflow's default minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def tracking_uri(cfg: TrackingConfig) -> str:
    return cfg.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI", "")


def enabled(cfg: RunConfig) -> bool:
    return bool(tracking_uri(cfg.tracking))


def _client(cfg: TrackingConfig) -> Any:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(cfg))
    return MlflowClient()


def _plugin_task_run() -> str:
    """The task's run when KFP's MLflow plugin (or a user) set ``MLFLOW_RUN_ID``; else ''."""
    return os.environ.get("MLFLOW_RUN_ID", "")


def _experiment_id(cfg: TrackingConfig) -> str:
    """``MLFLOW_EXPERIMENT_ID`` when set (the plugin's experiment), else the configured one,
    created when missing; a local sqlite store keeps artifacts beside it."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    client = _client(cfg)
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:  # made before the tag (or by hand): a kind the user set stays
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    uri = tracking_uri(cfg)
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(cfg.experiment, artifact_location=location,
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def check(cfg: RunConfig) -> None:
    """Reach MLflow and the object store now, so a misconfiguration costs one line, not a run."""
    if cfg.tracking.store:
        open_store(cfg.tracking.store).check()
    if not enabled(cfg):
        return
    quiet = logging.getLogger("urllib3")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # connection retries would print a warning each; one line suffices
    try:
        _experiment_id(cfg.tracking)
    except Exception as exc:
        raise VideostarError(f"MLflow at {tracking_uri(cfg.tracking)}: {first_line(exc)}") from exc
    finally:
        quiet.setLevel(level)


def start_run(cfg: RunConfig, pipeline_run: str) -> str:
    """The parent run of a pipeline run (reused if it exists); returns its id ('' when off)."""
    check(cfg)
    if not enabled(cfg):
        return ""
    from videostar.config import config_to_dict

    client = _client(cfg.tracking)
    if _plugin_task_run():
        parent = pipeline_run_of(client, _plugin_task_run())
        client.set_tag(parent, PARENT_TAG, pipeline_run)
    else:
        found = _find(cfg, f"tags.`{PARENT_TAG}` = '{pipeline_run}' and tags.`{CYCLE_TAG}` IS NULL")
        parent = found or client.create_run(_experiment_id(cfg.tracking), run_name=pipeline_run,
                                            tags={PARENT_TAG: pipeline_run}).info.run_id
    params = _flatten(config_to_dict(cfg))
    for key, value in params.items():
        with contextlib.suppress(Exception):  # params are immutable: a resumed run keeps its own
            client.log_param(parent, key, value)
    return parent


def pipeline_run_of(client: Any, run_id: str) -> str:
    """The top of ``run_id``'s chain of ``mlflow.parentRunId`` tags: the pipeline's run, above
    the task's run and any sub-pipeline's run (the plugin gives each its own run)."""
    seen = {run_id}
    while (up := client.get_run(run_id).data.tags.get(NESTED_TAG)) and up not in seen:
        seen.add(up)
        run_id = up
    return run_id


def _find(cfg: RunConfig, filter_string: str) -> str | None:
    client = _client(cfg.tracking)
    runs = client.search_runs([_experiment_id(cfg.tracking)], filter_string=filter_string,
                              max_results=1)
    return runs[0].info.run_id if runs else None


def cycle_run(cfg: RunConfig, parent: str, cycle: int | str, meta: dict[str, str]) -> str:
    """The nested run of ``cycle`` (or of the RLAIF stage) under ``parent``, created on first use."""
    client = _client(cfg.tracking)
    info = client.get_run(parent)
    pipeline_run = info.data.tags.get(PARENT_TAG, "")
    experiment = info.info.experiment_id  # nested runs live in their parent's experiment
    found = client.search_runs(
        [experiment], filter_string=f"tags.{NESTED_TAG} = '{parent}' and tags.`{CYCLE_TAG}` = '{cycle}'",
        max_results=1)
    if found:
        return found[0].info.run_id
    tags = {NESTED_TAG: parent, CYCLE_TAG: str(cycle), PARENT_TAG: pipeline_run,
            "cycle": str(cycle), **meta}
    name = cycle if isinstance(cycle, str) else f"cycle-{cycle}"
    return client.create_run(experiment, run_name=name, tags=tags).info.run_id


@contextlib.contextmanager
def step_run(cfg: RunConfig, parent: str, cycle: int | str, meta: dict[str, str]
             ) -> Iterator[str | None]:
    """Make the cycle's (or RLAIF's) run active during a step, recording system metrics."""
    if not (enabled(cfg) and parent):
        yield None
        return
    import mlflow

    run_id = cycle_run(cfg, parent, cycle, meta)
    with mlflow.start_run(run_id=run_id, log_system_metrics=cfg.tracking.system_metrics):
        yield run_id


def log_cycle(
    cfg: RunConfig, parent: str, summary: dict[str, Any], sft: dict[str, Any],
    training_files: list[str], model_dir: str, history: list[dict[str, Any]], meta: dict[str, str],
) -> dict[str, Any]:
    """Everything a cycle produced, into MLflow and the store; returns what was logged where."""
    cycle = summary["cycle"]
    client = _client(cfg.tracking)
    run_id = cycle_run(cfg, parent, cycle, meta)
    pipeline_run = client.get_run(parent).data.tags.get(PARENT_TAG, parent)
    key = scoped_key(pipeline_run, cycle, "sft", "train.jsonl")
    data_uri, dataset = _log_dataset(cfg, client, run_id, key, f"cycle-{cycle}-train", "training",
                                     training_files)
    model_id = _logged_model(client, run_id, parent, f"cycle-{cycle}", SFT_MODEL, model_dir, cycle,
                             meta | {CYCLE_TAG: str(cycle), PARENT_TAG: pipeline_run})
    metrics = cycle_metrics(summary, sft)
    # evaluation scores are the model's own; yields and loss are measured on its training data
    scored = {k: v for k, v in metrics.items() if k.startswith(SCORE_PREFIXES)}
    _log_metrics(client, run_id, scored, cycle, model_id)
    _log_metrics(client, run_id, {k: v for k, v in metrics.items() if k not in scored}, cycle,
                 model_id, dataset)
    _log_metrics(client, parent, metrics, cycle)
    name = cfg.tracking.registered_model
    version = _register(client, name, model_id, "candidate", {"cycle": str(cycle)})
    # the champion is the cycle decide hands on: the best on validation (decide.select), else on
    # decide.metric; never on the reported held-out numbers
    best = ranked_models(client, client.get_run(run_id).info.experiment_id, parent,
                         metric_key(cfg.decide.select or cfg.decide.metric))
    if best and (champion := _version_of(best[0], name)):
        client.set_registered_model_alias(name, "champion", champion)
    _log_plots(client, parent, history)
    client.set_terminated(run_id)
    return {"run_id": run_id, "dataset": data_uri, "model_id": model_id, "model_version": version,
            "metrics": metrics}


_REFUSED_IN_NAMES = re.compile(r"[^/\w.\- :]")


def metric_key(name: str) -> str:
    """``name`` as MLflow accepts it (letters, digits, ``_ - . / : space``): STEP's groups and
    buckets (``path_length=3``, ``accuracy_steps_3+``) become ``path_length_3``, ``..._3plus``."""
    return _REFUSED_IN_NAMES.sub("_", name.replace("+", "plus"))


def cycle_metrics(summary: dict[str, Any], sft: dict[str, Any]) -> dict[str, float]:
    """The numbers compared across cycles, under MLflow names (``metric_key``): yields overall,
    per label type, per task and group (``answer_yield.step_counting``,
    ``total_yield.path_length_3``), and train loss."""
    metrics = {k: float(summary[k]) for k in ("answer_yield", "rationalization_yield", "total_yield")}
    for kind, counts in summary["per_label_type"].items():
        metrics[f"answer_yield.{kind}"] = float(counts["answer_yield"])
        metrics[f"total_yield.{kind}"] = float(counts["total_yield"])
    for table in ("per_task", "per_group"):  # STEP: question types and path lengths
        for key, counts in summary.get(table, {}).items():
            metrics[f"answer_yield.{key}"] = float(counts["answer_yield"])
            metrics[f"total_yield.{key}"] = float(counts["total_yield"])
    metrics |= {k: float(v) for k, v in summary.items() if k.startswith(SCORE_PREFIXES)}
    if sft.get("train_loss") is not None:
        metrics["train_loss"] = float(sft["train_loss"])
    metrics["train_examples"] = float(sft.get("examples", 0))
    return {metric_key(k): v for k, v in metrics.items()}


def _store(cfg: RunConfig) -> Store | None:
    return open_store(cfg.tracking.store) if cfg.tracking.store else None


def _log_dataset(cfg: RunConfig, client: Any, run_id: str, key: str, name: str, context: str,
                 files: list[str]) -> tuple[str, tuple[str, str]]:
    """Publish the files, joined, under ``key`` and log them as an MLflow dataset sourced from
    that URI (the cycle's training data, the RLAIF preferences); returns the URI and the
    dataset's (name, digest), which metrics name to link to it."""
    import hashlib

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / Path(key).name
        merged.write_bytes(b"".join(Path(f).read_bytes() for f in files if Path(f).exists()))
        digest = hashlib.sha256(merged.read_bytes()).hexdigest()[:16]
        store = _store(cfg)
        uri = store.publish(merged, key) if store else merged.resolve().as_uri()
    dataset = MetaDataset(resolve_dataset_source(uri), name=name, digest=digest)
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(),
                                                     [InputTag("mlflow.data.context", context)])])
    return uri, (name, digest)


def _log_metrics(client: Any, run_id: str, metrics: dict[str, float], step: int = 0,
                 model_id: str | None = None, dataset: tuple[str, str] | None = None) -> None:
    """One batch of metrics on a run, linked to a LoggedModel and a dataset when given (the
    model's page and the Models tab then show them, per dataset)."""
    from mlflow.entities import Metric

    name, digest = dataset or (None, None)
    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, step, model_id=model_id, dataset_name=name, dataset_digest=digest)
             for k, v in metrics.items()]
    for start in range(0, len(batch), 1000):  # MLflow's log_batch limit
        client.log_batch(run_id, metrics=batch[start:start + 1000])


def _logged_model(client: Any, run_id: str, parent: str, name: str, model_type: str, model_dir: str,
                  step: int, tags: dict[str, str]) -> str:
    """The MLflow 3 LoggedModel ``name`` of ``run_id``, holding the files of ``model_dir``; a
    retried step finds the one it finished, and an upload cut short is marked FAILED."""
    from mlflow.entities import LoggedModelOutput

    experiment = client.get_run(run_id).info.experiment_id
    for model in client.search_logged_models(
            [experiment], filter_string=f"source_run_id = '{run_id}' AND name = '{name}'"):
        if _ready(model):
            return model.model_id
        client.finalize_logged_model(model.model_id, "FAILED")
    model = client.create_logged_model(experiment, name=name, source_run_id=run_id, model_type=model_type,
                                       tags=tags | {PARENT_RUN_TAG: parent})
    client.log_model_artifacts(model.model_id, model_dir)
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    return model.model_id


def _version_of(model: Any, name: str) -> str | None:
    """The version of registered model ``name`` made from a LoggedModel (None if none is)."""
    versions = json.loads(model.tags.get("mlflow.modelVersions", "[]"))
    return next((str(v["version"]) for v in versions if v["name"] == name), None)


def _register(client: Any, name: str, model_id: str, alias: str, tags: dict[str, str]) -> str:
    """Register the LoggedModel as a version of ``name`` (once: a retried step reuses it) and
    point ``alias`` at it."""
    import mlflow

    version = _version_of(client.get_logged_model(model_id), name)
    if version is None:
        version = str(mlflow.register_model(f"models:/{model_id}", name, tags=tags).version)
    client.set_registered_model_alias(name, alias, version)
    return version


def ranked_models(client: Any, experiment_id: str, parent: str, metric: str,
                  model_type: str = SFT_MODEL) -> list[Any]:
    """The pipeline run's LoggedModels of ``model_type``, best ``metric`` first (ties: the
    earlier model), by ``search_logged_models``; models without the metric come last."""
    models = client.search_logged_models(
        [experiment_id],
        filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent}' AND model_type = '{model_type}'",
        order_by=[{"field_name": f"metrics.{metric}", "ascending": False},
                  {"field_name": "creation_time", "ascending": True}])
    return [m for m in models if _ready(m)]


def _ready(model: Any) -> bool:
    # not in the filter: MLflow's SQL store compares a status filter with its integer code
    return str(model.status) == "READY"


def _numbers(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v}


def _log_on_both(client: Any, run_id: str, parent: str, metrics: dict[str, float],
                 model_id: str | None = None, dataset: tuple[str, str] | None = None) -> None:
    """RLAIF numbers on its run (linked to the model that earned them) and, prefixed
    ``rlaif.``, on the parent next to the cycles'."""
    _log_metrics(client, run_id, metrics, 0, model_id, dataset)
    _log_metrics(client, parent, {f"rlaif.{k}": v for k, v in metrics.items()})


def _find_model(client: Any, run_id: str, name: str) -> str | None:
    """The finished LoggedModel ``name`` of ``run_id``, if there is one."""
    experiment = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models([experiment],
                                        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'")
    return next((m.model_id for m in found if _ready(m)), None)


def _run_dataset(client: Any, run_id: str, name: str) -> tuple[str, str] | None:
    """(name, digest) of the dataset ``name`` logged as an input of ``run_id``."""
    for item in client.get_run(run_id).inputs.dataset_inputs:
        if item.dataset.name == name:
            return item.dataset.name, item.dataset.digest
    return None


PREFERENCES = "rlaif-preferences"


def log_preferences(cfg: RunConfig, parent: str, metrics: dict[str, Any], files: list[Path]) -> str:
    """The preference pairs as an MLflow dataset (published under the run's keys), and counts."""
    client = _client(cfg.tracking)
    run_id = cycle_run(cfg, parent, RLAIF, {"stage": RLAIF})
    pipeline_run = client.get_run(parent).data.tags.get(PARENT_TAG, parent)
    _log_on_both(client, run_id, parent, _numbers(metrics, "preferences."))
    return _log_dataset(cfg, client, run_id, scoped_key(pipeline_run, None, RLAIF, "preferences.jsonl"),
                        PREFERENCES, "preferences", [str(f) for f in files])[0]


def log_reward_model(cfg: RunConfig, parent: str, result: dict[str, Any], model_dir: str) -> str:
    """The reward model as the RLAIF run's LoggedModel ``reward-model``, its held-out pairwise
    accuracy and loss curve linked to it and to the preference dataset; returns its id."""
    client = _client(cfg.tracking)
    run_id = cycle_run(cfg, parent, RLAIF, {"stage": RLAIF})
    model_id = _logged_model(client, run_id, parent, REWARD_MODEL, REWARD_MODEL, model_dir, 0,
                             {"stage": RLAIF})
    dataset = _run_dataset(client, run_id, PREFERENCES)
    _log_on_both(client, run_id, parent, _numbers(result, "reward_model."), model_id, dataset)
    for i, loss in enumerate(result.get("loss_history", [])):
        _log_metrics(client, run_id, {"reward_model.loss": loss}, i, model_id, dataset)
    return model_id


PPO_CURVES = ("reward", "kl", "kl_coef", "response_length", "verifier_pass_rate", "reward_model_auc",
              "entropy", "clipfrac", "value_loss", "policy_loss", "value_clipfrac")
"""PPO's per-step statistics: the reward model's score, KL (and its coefficient) and length of the
samples, the verifier's pass rate on them and the reward model's ranking accuracy on them (reward
hacking: the score up, these two down), the update's losses."""
RL_CURVES = {"ppo": PPO_CURVES,
             "grpo": ("reward", "verifier_pass_rate", "kl", "response_length", "zero_variance_groups",
                      "entropy", "clipfrac", "policy_loss", "kl_loss")}
"""The per-step statistics each RL algorithm logs as ``<algorithm>.<name>``."""


def rl_logger(cfg: RunConfig, run_id: str, algorithm: str = "ppo") -> Any:
    """A callback for ``train_ppo`` (``train_grpo``): every step's statistics, ``step`` = RL step."""
    from mlflow.entities import Metric

    client = _client(cfg.tracking)

    def log(record: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[
            Metric(f"{algorithm}.{k}", float(record[k]), now, int(record["step"]))
            for k in RL_CURVES[algorithm] if k in record and record[k] == record[k]])  # NaN: none
    return log


def log_policy(cfg: RunConfig, parent: str, result: dict[str, Any], model_dir: str,
               algorithm: str = "ppo") -> str:
    """Reward before/after linked to the RL policy (PPO's or GRPO's: ``algorithm``), a
    LoggedModel (``rl-policy``) registered as a version of ``tracking.registered_policy``
    aliased ``aligned``, the reward and KL curves as a plot; then the RLAIF run and the parent
    are closed."""
    client = _client(cfg.tracking)
    run_id = cycle_run(cfg, parent, RLAIF, {"stage": RLAIF})
    model_id = _logged_model(client, run_id, parent, POLICY_MODEL, POLICY_MODEL, model_dir, 0,
                             {"stage": RLAIF, "algorithm": algorithm})
    _log_on_both(client, run_id, parent, _numbers(result, f"{algorithm}."), model_id)
    version = _register(client, cfg.tracking.registered_policy, model_id, "aligned", {"stage": RLAIF})
    name = algorithm.upper()
    _plot_steps(client, parent, f"{algorithm}_curves.png", f"{name} step", [
        (f"reward per {name} step", "reward", [(h["step"], h["reward"]) for h in result["history"]]),
        ("KL to the SFT model", "KL", [(h["step"], h["kl"]) for h in result["history"]]),
    ])
    client.set_terminated(run_id)
    finish(cfg, parent)
    return version


def _plot_steps(client: Any, run_id: str, name: str, xlabel: str,
                panels: list[tuple[str, str, list[tuple[Any, Any]]]]) -> None:
    """One row of line charts (title, y label, points) as a PNG artifact under ``plots/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (title, ylabel, points) in zip(axes[0], panels, strict=True):
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        fig.savefig(path, dpi=100)
        client.log_artifact(run_id, str(path), "plots")
    plt.close(fig)


def _log_plots(client: Any, parent: str, history: list[dict[str, Any]]) -> None:
    """Yield per cycle (the paper's Figure 4), overall and per label type, on the parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cycles = [h["cycle"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("answer_yield", "rationalization_yield", "total_yield"):
        ax1.plot(cycles, [h[key] for h in history], marker="o", label=key.replace("_", " "))
    kinds = sorted({k for h in history for k in h["per_label_type"]})
    for kind in kinds:
        ax2.plot(cycles, [h["per_label_type"].get(kind, {}).get("total_yield") for h in history],
                 marker="o", label=kind)
    for ax, title in ((ax1, "yield per cycle"), (ax2, "total yield per label type")):
        ax.set(xlabel="cycle", ylabel="yield", ylim=(0, 1.05), title=title)
        ax.set_xticks(cycles)
        ax.legend()
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "yield_per_cycle.png"
        fig.savefig(path, dpi=100)
        client.log_artifact(parent, str(path), "plots")
    plt.close(fig)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "templates":
            out |= _flatten(value, f"{name}.")
        else:
            out[name] = str(value)[:500]
    return out


def log_scores(cfg: RunConfig, parent: str, stage: str, cycle: int | None,
               scores: dict[str, float]) -> None:
    """Benchmark numbers: the base model's on the parent (``baseline.*``), a cycle's on its run,
    the PPO policy's on the RLAIF run and on the parent (``rlaif.*``)."""
    client = _client(cfg.tracking)
    scores = {metric_key(k): v for k, v in scores.items()}
    if stage == RLAIF:  # the policy's scores, linked to it
        run_id = cycle_run(cfg, parent, RLAIF, {})
        _log_on_both(client, run_id, parent, scores, _find_model(client, run_id, POLICY_MODEL))
        return
    if stage == BASELINE:
        _log_metrics(client, parent, {f"baseline.{k}": v for k, v in scores.items()})
        return
    # a cycle's model is logged at its decide step, which links these scores to it
    _log_metrics(client, cycle_run(cfg, parent, cycle, {}), scores, cycle)


def finish(cfg: RunConfig, parent: str) -> None:
    """Close the parent run once the last cycle has been logged, unless the plugin owns it."""
    if enabled(cfg) and parent and not _plugin_task_run():
        _client(cfg.tracking).set_terminated(parent)


def compare(cfg: RunConfig, run: str | None = None, metric: str | None = None
            ) -> tuple[str, list[dict[str, Any]]]:
    """The cycles' models of one pipeline run (default: the latest) of the experiment, ranked by
    ``metric`` (default ``decide.metric``) with :func:`ranked_models`: per model its rank, cycle,
    LoggedModel id, registered version, that version's aliases and the model's metrics."""
    client = _client(cfg.tracking)
    exp_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    exp = client.get_experiment(exp_id) if exp_id else client.get_experiment_by_name(
        cfg.tracking.experiment)
    name = exp_id or cfg.tracking.experiment
    if exp is None:
        raise VideostarError(f"MLflow at {tracking_uri(cfg.tracking)}: no experiment {name!r}")
    parent = run or _find(cfg, f"tags.`{CYCLE_TAG}` IS NULL and tags.`{PARENT_TAG}` != ''")
    if parent is None:
        raise VideostarError(f"experiment {name!r} has no videostar runs")
    models = ranked_models(client, exp.experiment_id, parent, metric_key(metric or cfg.decide.metric))
    if not models:
        raise VideostarError(f"run {parent} of experiment {name!r} has no logged cycle models")
    registered = cfg.tracking.registered_model
    aliases: dict[str, list[str]] = {}
    with contextlib.suppress(Exception):  # a registry without the name: no aliases to show
        for alias, version in client.get_registered_model(registered).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
    rows = []
    for rank, model in enumerate(models, 1):
        version = _version_of(model, registered)
        rows.append({"rank": rank, "cycle": int(model.tags[CYCLE_TAG]), "model_id": model.model_id,
                     "run_id": model.source_run_id, "version": version,
                     "aliases": sorted(aliases.get(version or "", [])),
                     **{m.key: m.value for m in model.metrics}})
    return parent, rows


def log_examples(cfg: RunConfig, parent: str, cycle: int, table: dict[str, list[Any]]) -> None:
    """A sample of the cycle's accepted and rejected answers with the verifier's reasons, as the
    cycle run's ``examples.json`` table (the UI shows it under the run's Artifacts)."""
    import mlflow

    run_id = cycle_run(cfg, parent, cycle, {})
    if any(a.path == "examples.json" for a in _client(cfg.tracking).list_artifacts(run_id)):
        return  # a retried step: log_table would append the sample again
    mlflow.log_table(table, "examples.json", run_id=run_id)


def ui_url(cfg: RunConfig, pipeline_run: str = "") -> str:
    """The MLflow UI page of the experiment's runs in the model-training view; given a pipeline
    run, only its runs, sorted by name: cycle-0, cycle-1, ..., rlaif, then the parent. (The UI
    folds nested runs under their parent when sorted by date, its default.) A local store's UI is
    ``mlflow ui``'s."""
    from urllib.parse import urlencode

    uri = tracking_uri(cfg.tracking)
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI
    query = {"workflowType": "machine_learning"}
    if pipeline_run:
        query |= {"searchFilter": f"tags.`{PARENT_TAG}` = '{pipeline_run}'",
                  "orderByKey": "tags.`mlflow.runName`", "orderByAsc": "true"}
    return f"{base}/#/experiments/{_experiment_id(cfg.tracking)}/runs?{urlencode(query)}"


class Tracker:
    """The MLflow logging of one pipeline run, handed to the steps.

    Steps call it unconditionally: :func:`tracker` gives a :class:`NullTracker` when tracking is
    off or the step has no parent run, so no step needs an ``if enabled`` guard.
    """

    def __init__(self, cfg: RunConfig, parent: str) -> None:
        self.cfg, self.parent = cfg, parent
        self.tags = {"dataset": cfg.pipeline.dataset, "base_model": cfg.pipeline.base_model}

    def _tags(self, cycle: int | str) -> dict[str, str]:
        return self.tags | {"stage": RLAIF} if cycle == RLAIF else self.tags

    def step_run(self, cycle: int | str) -> contextlib.AbstractContextManager[str | None]:
        """The cycle's (or RLAIF's) run, active while a step trains: yields its id."""
        return step_run(self.cfg, self.parent, cycle, self._tags(cycle))

    def log_examples(self, cycle: int, outputs: list[tuple[str, Path]]) -> None:
        """A sample of what verify and rationalize (``(step, folder)`` each) accepted and rejected."""
        from videostar.export import verdict_examples

        log_examples(self.cfg, self.parent, cycle, verdict_examples(outputs, cycle))

    def log_cycle(self, summary: dict[str, Any], sft: dict[str, Any], training_files: list[str],
                  model_dir: str, history: list[dict[str, Any]]) -> None:
        log_cycle(self.cfg, self.parent, summary, sft, training_files, model_dir, history,
                  self._tags(summary["cycle"]))

    def log_scores(self, stage: str, cycle: int | None, scores: dict[str, float]) -> None:
        log_scores(self.cfg, self.parent, stage, cycle, scores)

    def log_preferences(self, metrics: dict[str, Any], files: list[Path]) -> None:
        log_preferences(self.cfg, self.parent, metrics, files)

    def log_reward_model(self, result: dict[str, Any], model_dir: str) -> None:
        log_reward_model(self.cfg, self.parent, result, model_dir)

    def rl_logger(self, run_id: str | None, algorithm: str = "ppo") -> Any:
        """``train_ppo``'s (``train_grpo``'s) per-step callback (None outside an active RLAIF run)."""
        return rl_logger(self.cfg, run_id, algorithm) if run_id else None

    def log_policy(self, result: dict[str, Any], model_dir: str, algorithm: str = "ppo") -> None:
        log_policy(self.cfg, self.parent, result, model_dir, algorithm)

    def finish(self) -> None:
        finish(self.cfg, self.parent)


class NullTracker(Tracker):
    """Tracking off: every call does nothing, and a step run is no run."""

    def step_run(self, cycle: int | str) -> contextlib.AbstractContextManager[str | None]:
        return contextlib.nullcontext(None)

    def log_examples(self, *args: Any) -> None:
        pass

    def log_cycle(self, *args: Any) -> None:
        pass

    def log_scores(self, *args: Any) -> None:
        pass

    def log_preferences(self, *args: Any) -> None:
        pass

    def log_reward_model(self, *args: Any) -> None:
        pass

    def log_policy(self, *args: Any) -> None:
        pass

    def finish(self) -> None:
        pass


def tracker(cfg: RunConfig, parent: str) -> Tracker:
    """The tracker of a step: real when tracking is on and the pipeline run has a parent run."""
    return Tracker(cfg, parent) if enabled(cfg) and parent else NullTracker(cfg, parent)
