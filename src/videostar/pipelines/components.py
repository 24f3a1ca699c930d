"""One KFP component per Video-STaR and VLM-RLAIF step.

Each is a lightweight Python component whose body only parses its inputs and calls
:mod:`videostar.steps` or :mod:`videostar.rlaif`; the step images have ``videostar`` installed,
and the local runner uses the current environment, so the same component runs in both. Every step writes its
folder of outputs into ``out`` and its headline numbers into ``metrics`` (shown by the KFP UI).
"""

from dataclasses import dataclass
from typing import Any, List, Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from videostar.config import Images


def generate_op(config: str, model: Input[Model], base: Input[Model], records: Input[Dataset],
                shard: int, num_shards: int, out: Output[Dataset], metrics: Output[Metrics]):
    """Answer one shard of the questions with the current cycle's model."""
    from videostar.config import config_from_json
    from videostar.pipelines.runtime import log_metrics, records_file
    from videostar.steps import generate

    result = generate(model.path, records_file(records.path), out.path, config_from_json(config),
                      base=base.path, index=shard, count=num_shards, progress=False)
    log_metrics(metrics, result)


def verify_op(config: str, answers: Input[List[Dataset]], out: Output[Dataset],
              metrics: Output[Metrics]):
    """Keep the answers of all shards that contain every label."""
    from videostar.config import config_from_json
    from videostar.pipelines.runtime import log_metrics
    from videostar.steps import verify

    result = verify([a.path + "/answers.jsonl" for a in answers], out.path, config_from_json(config))
    log_metrics(metrics, result)


def rationalize_op(config: str, model: Input[Model], base: Input[Model], verification: Input[Dataset],
                   shard: int, num_shards: int, out: Output[Dataset], metrics: Output[Metrics]):
    """Retry one shard of the rejected questions with the label as a hint."""
    from videostar.config import config_from_json
    from videostar.pipelines.runtime import log_metrics
    from videostar.steps import rationalize

    result = rationalize(model.path, verification.path + "/rejected.jsonl", out.path,
                         config_from_json(config), base=base.path, index=shard, count=num_shards,
                         progress=False)
    log_metrics(metrics, result)


def start_op(config: str, pipeline_run: str) -> str:
    """Fail fast on a bad MLflow or object store; open the run's parent MLflow run."""
    from videostar.config import config_from_json
    from videostar.steps import start

    return start(config_from_json(config), pipeline_run)


def sft_op(config: str, cycle: int, parent_run: str, base: Input[Model], verification: Input[Dataset],
           rationales: Input[List[Dataset]], model: Output[Model], out: Output[Dataset],
           metrics: Output[Metrics]):
    """Instruction-tune the base checkpoint on every verified answer and rationale of the cycle."""
    import os

    from videostar.config import config_from_json
    from videostar.pipelines.runtime import log_metrics
    from videostar.steps import sft

    data = [verification.path + "/verified.jsonl"] + [r.path + "/verified.jsonl" for r in rationales]
    os.makedirs(out.path, exist_ok=True)
    result = sft(base.path, data, model.path, out.path + "/metrics.json", config_from_json(config),
                 progress=False, parent_run=parent_run, cycle=cycle)
    log_metrics(metrics, result)


def evaluate_op(config: str, cycle: int, parent_run: str, model: Input[Model], base: Input[Model],
                out: Output[Dataset], metrics: Output[Metrics], stage: str = "cycle"):
    """Run the configured benchmark suites on a cycle's model (cycle -1: the base model; stage
    ``rlaif``: the PPO policy, whose ``base`` is the SFT model)."""
    from videostar.config import config_from_json
    from videostar.pipelines.runtime import log_metrics
    from videostar.steps import evaluate

    scores = evaluate(model.path, out.path, config_from_json(config), cycle, base=base.path,
                      parent_run=parent_run, progress=False, stage=stage)
    log_metrics(metrics, scores)


def decide_op(config: str, cycle: int, parent_run: str, verification: Input[Dataset],
              rationales: Input[List[Dataset]], training: Input[Dataset], model: Input[Model],
              out: Output[Dataset], metrics: Output[Metrics],
              previous: Optional[Input[Dataset]] = None,
              evaluation: Optional[Input[Dataset]] = None) -> bool:
    """Summarize and log the cycle, append it to the history, and decide on another cycle."""
    from videostar.config import config_from_json
    from videostar.pipelines.runtime import log_metrics, read_history, write_decision
    from videostar.steps import conclude

    history = read_history(previous.path if previous is not None else None)
    summary, decision = conclude(cycle, verification.path, [r.path for r in rationales],
                                 training.path, model.path, history, config_from_json(config),
                                 parent_run, evaluation.path if evaluation is not None else None)
    write_decision(out.path, summary, decision, [*history, summary])
    log_metrics(metrics, summary)
    return decision["continue"]


def preferences_op(config: str, parent_run: str, model: Input[Model], base: Input[Model],
                   records: Input[Dataset], out: Output[Dataset], metrics: Output[Metrics]):
    """RLAIF: clip narratives, two samples per prompt, the judge's verdicts -> preference pairs."""
    from videostar.config import config_from_json
    from videostar.pipelines.runtime import log_metrics, records_file
    from videostar.rlaif import preferences

    result = preferences(model.path, records_file(records.path), out.path, config_from_json(config),
                         base=base.path, parent_run=parent_run, progress=False)
    log_metrics(metrics, result)


def reward_model_op(config: str, parent_run: str, model: Input[Model], base: Input[Model],
                    preferences: Input[Dataset], reward: Output[Model], out: Output[Dataset],
                    metrics: Output[Metrics]):
    """RLAIF: the SFT model + LoRA + a scalar head, trained on the preference pairs."""
    import os

    from videostar.config import config_from_json
    from videostar.pipelines.runtime import log_metrics
    from videostar.rlaif import reward_model

    os.makedirs(out.path, exist_ok=True)
    result = reward_model(model.path, preferences.path, reward.path, out.path + "/metrics.json",
                          config_from_json(config), base=base.path, parent_run=parent_run,
                          progress=False)
    log_metrics(metrics, result)


def ppo_op(config: str, parent_run: str, model: Input[Model], base: Input[Model], reward: Input[Model],
           records: Input[Dataset], preferences: Input[Dataset], policy: Output[Model],
           out: Output[Dataset], metrics: Output[Metrics]):
    """RLAIF: PPO of the SFT model (+ LoRA) against the reward model, KL-tied to the SFT model."""
    from videostar.config import config_from_json
    from videostar.pipelines.runtime import log_metrics, records_file
    from videostar.rlaif import ppo

    result = ppo(model.path, reward.path, records_file(records.path), preferences.path, policy.path,
                 out.path, config_from_json(config), base=base.path, parent_run=parent_run,
                 progress=False)
    log_metrics(metrics, result)


@dataclass(frozen=True)
class Components:
    start: Any
    generate: Any
    verify: Any
    rationalize: Any
    sft: Any
    evaluate: Any
    decide: Any
    preferences: Any
    reward_model: Any
    ppo: Any


def build_components(images: Images) -> Components:
    """The components with their images: generation and training on GPU, the rest on CPU."""
    def make(func, image):
        return dsl.component(func, base_image=image)

    return Components(
        start=make(start_op, images.cpu),
        generate=make(generate_op, images.gpu),
        verify=make(verify_op, images.cpu),
        rationalize=make(rationalize_op, images.gpu),
        sft=make(sft_op, images.gpu),
        evaluate=make(evaluate_op, images.gpu),
        decide=make(decide_op, images.cpu),
        preferences=make(preferences_op, images.gpu),
        reward_model=make(reward_model_op, images.gpu),
        ppo=make(ppo_op, images.gpu),
    )
