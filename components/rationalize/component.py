"""rationalize: retry one shard of the rejected questions with the label as a hint."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def rationalize(config: str, model: Input[Model], base_model: Input[Model], verification: Input[Dataset],
                shard: int, num_shards: int, out: Output[Dataset], metrics: Output[Metrics]):
    """The rejected records of ``verification`` (one shard) -> verified rationales in ``out``."""
    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import REJECTED
    from videostar.star.steps import rationalize as run

    result = run(model.path, f"{verification.path}/{REJECTED}", out.path, config_from_json(config),
                 adapter_base=base_model.path, index=shard, count=num_shards, progress=False)
    log_metrics(metrics, result)
