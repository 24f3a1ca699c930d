"""generate: answer one shard of the questions with the current cycle's model."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def generate(config: str, model: Input[Model], base_model: Input[Model], records: Input[Dataset],
             shard: int, num_shards: int, out: Output[Dataset], metrics: Output[Metrics]):
    """Answer every ``num_shards``-th record from ``shard`` into ``out/answers.jsonl``; the
    model is the base model or a cycle's adapter on it."""
    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import records_file
    from videostar.star.steps import generate as run

    result = run(model.path, records_file(records.path), out.path, config_from_json(config),
                 adapter_base=base_model.path, index=shard, count=num_shards, progress=False)
    log_metrics(metrics, result)
