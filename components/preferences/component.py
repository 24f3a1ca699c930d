"""preferences (VLM-RLAIF): clip narratives, two samples per prompt, the judge's verdicts."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "gpu"


def preferences(config: str, parent_run: str, model: Input[Model], base_model: Input[Model],
                records: Input[Dataset], out: Output[Dataset], metrics: Output[Metrics]):
    """The SFT ``model`` samples and judges -> ``out/pairs.jsonl``, ``heldout.jsonl``, ``split.json``."""
    from videostar.components.runtime import log_metrics

    from videostar.config import config_from_json
    from videostar.layout import records_file
    from videostar.rlaif.steps import preferences as run

    result = run(model.path, records_file(records.path), out.path, config_from_json(config),
                 adapter_base=base_model.path, parent_run=parent_run, progress=False)
    log_metrics(metrics, result)
