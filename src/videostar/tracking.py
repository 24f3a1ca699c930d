"""MLflow tracking of the self-training cycles, with run outputs copied to the object store.

One parent run per pipeline run, one nested run per cycle. Under KFP's MLflow plugin (KFP 2.17)
the parent is the plugin's own run of the pipeline: the plugin nests one run per task under it
and gives each task ``MLFLOW_RUN_ID`` = that task's run and ``MLFLOW_EXPERIMENT_ID``, so the
pipeline's run is found by following ``mlflow.parentRunId`` up from the task's run; the plugin's
runs are never closed here. Per cycle: yields and training metrics (``step=cycle``, on
the cycle run and on the parent, so the parent's charts show the trend), the training data as an
MLflow dataset whose source is its object-store URI, the adapter as a registered model version
aliased ``candidate``, ``champion`` moved to the best cycle, plots of the history, and a table of
accepted and rejected answers with the verifier's reasons.
Steps log through a :class:`Tracker` (a :class:`NullTracker` when tracking is off); they hold no
logging code of their own.
"""

from __future__ import annotations

import contextlib
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
from videostar.layout import BASELINE, RLAIF
from videostar.store import Store, open_store, scoped_key

PARENT_TAG = "videostar.pipeline_run"
NESTED_TAG = "mlflow.parentRunId"
CYCLE_TAG = "videostar.cycle"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
"""MLflow 3's UI opens an experiment without a kind in its GenAI view (traces), which hides the
cycle runs; this kind opens it on "Model training", i.e. the runs, metrics and tables."""
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
    metrics = cycle_metrics(summary, sft)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value, step=cycle)
        client.log_metric(parent, key, value, step=cycle)
    data_uri = _log_dataset(cfg, client, run_id, scoped_key(pipeline_run, cycle, "sft", "train.jsonl"),
                            f"cycle-{cycle}-train", "training", training_files)
    version = _register_model(cfg, client, run_id, model_dir, history)
    _log_plots(client, parent, history)
    client.set_terminated(run_id)
    return {"run_id": run_id, "dataset": data_uri, "model_version": version, "metrics": metrics}


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
    metrics |= {k: float(v) for k, v in summary.items() if k.startswith("eval.")}
    if sft.get("train_loss") is not None:
        metrics["train_loss"] = float(sft["train_loss"])
    metrics["train_examples"] = float(sft.get("examples", 0))
    return {metric_key(k): v for k, v in metrics.items()}


def _store(cfg: RunConfig) -> Store | None:
    return open_store(cfg.tracking.store) if cfg.tracking.store else None


def _log_dataset(cfg: RunConfig, client: Any, run_id: str, key: str, name: str, context: str,
                 files: list[str]) -> str:
    """Publish the files, joined, under ``key`` and log them as an MLflow dataset sourced from
    that URI (the cycle's training data, the RLAIF preferences)."""
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
    return uri


def _new_version(name: str, client: Any, run_id: str, model_dir: str, alias: str,
                 tags: dict[str, str]) -> str:
    """Log the adapter as the run's ``adapter`` artifact, register it as a version of ``name``,
    and point ``alias`` at it."""
    from mlflow.exceptions import MlflowException

    client.log_artifacts(run_id, model_dir, "adapter")
    source = f"{client.get_run(run_id).info.artifact_uri}/adapter"
    with contextlib.suppress(MlflowException):
        client.create_registered_model(name)
    version = client.create_model_version(name, source, run_id=run_id, tags=tags).version
    client.set_registered_model_alias(name, alias, version)
    return str(version)


def _register_model(cfg: RunConfig, client: Any, run_id: str, model_dir: str,
                    history: list[dict[str, Any]]) -> str:
    """A version aliased ``candidate``; ``champion`` moves to the best cycle."""
    name = cfg.tracking.registered_model
    cycle = history[-1]["cycle"]
    version = _new_version(name, client, run_id, model_dir, "candidate", {"cycle": str(cycle)})
    metric = cfg.decide.metric
    best = max(history, key=lambda h: h.get(metric, float("-inf")))
    if best["cycle"] == cycle:
        client.set_registered_model_alias(name, "champion", version)
    return version


def _numbers(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v}


def _log_on_both(client: Any, run_id: str, parent: str, metrics: dict[str, float]) -> None:
    """RLAIF numbers on its run and, prefixed ``rlaif.``, on the parent next to the cycles'."""
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
        client.log_metric(parent, f"rlaif.{key}", value)


def log_preferences(cfg: RunConfig, parent: str, metrics: dict[str, Any], files: list[Path]) -> str:
    """The preference pairs as an MLflow dataset (published under the run's keys), and counts."""
    client = _client(cfg.tracking)
    run_id = cycle_run(cfg, parent, RLAIF, {"stage": RLAIF})
    pipeline_run = client.get_run(parent).data.tags.get(PARENT_TAG, parent)
    _log_on_both(client, run_id, parent, _numbers(metrics, "preferences."))
    return _log_dataset(cfg, client, run_id, scoped_key(pipeline_run, None, RLAIF, "preferences.jsonl"),
                        "rlaif-preferences", "preferences", [str(f) for f in files])


def log_reward_model(cfg: RunConfig, parent: str, result: dict[str, Any], model_dir: str) -> None:
    """Held-out pairwise accuracy and the loss curve; the reward model folder as an artifact."""
    client = _client(cfg.tracking)
    run_id = cycle_run(cfg, parent, RLAIF, {"stage": RLAIF})
    _log_on_both(client, run_id, parent, _numbers(result, "reward."))
    for i, loss in enumerate(result.get("loss_history", [])):
        client.log_metric(run_id, "reward.loss", loss, step=i)
    client.log_artifacts(run_id, model_dir, "reward_model")


PPO_CURVES = ("reward", "kl", "entropy", "clipfrac", "value_loss", "policy_loss", "value_clipfrac",
              "response_length")


def ppo_logger(cfg: RunConfig, run_id: str) -> Any:
    """A callback for ``train_ppo``: every step's statistics, ``step`` = PPO step."""
    from mlflow.entities import Metric

    client = _client(cfg.tracking)

    def log(record: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(f"ppo.{k}", float(record[k]), now, int(record["step"]))
                                          for k in PPO_CURVES if k in record])
    return log


def log_ppo(cfg: RunConfig, parent: str, result: dict[str, Any], model_dir: str) -> str:
    """Reward before/after, the PPO policy as a version of ``tracking.registered_policy`` aliased
    ``aligned``,
    the reward and KL curves as a plot; then the RLAIF run and the parent are closed."""
    client = _client(cfg.tracking)
    run_id = cycle_run(cfg, parent, RLAIF, {"stage": RLAIF})
    _log_on_both(client, run_id, parent, _numbers(result, "ppo."))
    version = _new_version(cfg.tracking.registered_policy, client, run_id, model_dir, "aligned",
                           {"stage": RLAIF})
    _plot_steps(client, parent, "ppo_curves.png", [
        ("reward per PPO step", "reward", [(h["step"], h["reward"]) for h in result["history"]]),
        ("KL to the SFT model", "KL", [(h["step"], h["kl"]) for h in result["history"]]),
    ])
    client.set_terminated(run_id)
    finish(cfg, parent)
    return version


def _plot_steps(client: Any, run_id: str, name: str, panels: list[tuple[str, str, list[tuple[Any, Any]]]]
          ) -> None:
    """One row of line charts (title, y label, points) as a PNG artifact under ``plots/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (title, ylabel, points) in zip(axes[0], panels, strict=True):
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o")
        ax.set(xlabel="PPO step", ylabel=ylabel, title=title)
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
    if stage == RLAIF:
        run_id = cycle_run(cfg, parent, RLAIF, {})
        for key, value in scores.items():
            client.log_metric(run_id, key, value)
            client.log_metric(parent, f"rlaif.{key}", value)
        return
    if stage == BASELINE:
        for key, value in scores.items():
            client.log_metric(parent, f"baseline.{key}", value)
        return
    run_id = cycle_run(cfg, parent, cycle, {})
    for key, value in scores.items():
        client.log_metric(run_id, key, value, step=cycle)


def finish(cfg: RunConfig, parent: str) -> None:
    """Close the parent run once the last cycle has been logged, unless the plugin owns it."""
    if enabled(cfg) and parent and not _plugin_task_run():
        _client(cfg.tracking).set_terminated(parent)


def compare(cfg: RunConfig, run: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The per-cycle rows of one pipeline run (default: the latest) of the experiment."""
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
    cycles = client.search_runs([exp.experiment_id],
                                filter_string=f"tags.{NESTED_TAG} = '{parent}'")
    rows = [{"cycle": int(r.data.tags[CYCLE_TAG]), "run_id": r.info.run_id, **r.data.metrics}
            for r in cycles if r.data.tags.get(CYCLE_TAG, "").isdigit()]
    return parent, sorted(rows, key=lambda r: r["cycle"])


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

    def ppo_logger(self, run_id: str | None) -> Any:
        """``train_ppo``'s per-step callback (None outside an active RLAIF run)."""
        return ppo_logger(self.cfg, run_id) if run_id else None

    def log_ppo(self, result: dict[str, Any], model_dir: str) -> None:
        log_ppo(self.cfg, self.parent, result, model_dir)

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

    def log_ppo(self, *args: Any) -> None:
        pass

    def finish(self) -> None:
        pass


def tracker(cfg: RunConfig, parent: str) -> Tracker:
    """The tracker of a step: real when tracking is on and the pipeline run has a parent run."""
    return Tracker(cfg, parent) if enabled(cfg) and parent else NullTracker(cfg, parent)
