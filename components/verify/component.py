"""verify: keep the answers of all shards that contain every label (the Parser-Verifier)."""

from typing import List

from kfp.dsl import Dataset, Input, Metrics, Output

POOL = "cpu"


def verify(config: str, answers: Input[List[Dataset]], out: Output[Dataset], metrics: Output[Metrics]):
    """Every shard's ``answers.jsonl`` -> ``out/verified.jsonl`` and ``out/rejected.jsonl``."""
    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import ANSWERS
    from videostar.star.steps import verify as run

    result = run([f"{a.path}/{ANSWERS}" for a in answers], out.path, config_from_json(config))
    log_metrics(metrics, result)
