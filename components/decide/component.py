"""decide: summarize and log the cycle, and decide whether another cycle runs."""

from typing import List, Optional

from kfp.dsl import Dataset, Input, Metrics, Model, Output

POOL = "cpu"


def decide(config: str, cycle: int, parent_run: str, verification: Input[Dataset],
           rationales: Input[List[Dataset]], training: Input[Dataset], model: Input[Model],
           handed_on: Input[Model], previous: Input[Dataset], out: Output[Dataset],
           chosen: Output[Model], metrics: Output[Metrics],
           evaluation: Optional[Input[Dataset]] = None) -> bool:
    """The cycle's summary joins the history carried from ``previous`` (the last decision, or
    start's empty history); returns whether the next cycle runs. ``chosen`` is the model handed
    on: this cycle's ``model``, or ``handed_on`` (what the cycle before handed on) when an
    earlier cycle is better on ``decide.select``."""
    from videostar.components.runtime import log_metrics

    from videostar import layout
    from videostar.config import config_from_json
    from videostar.star.steps import decide as run
    from videostar.star.steps import training_files

    history = layout.read_history(previous.path)
    rationale_dirs = [r.path for r in rationales]
    summary, decision = run(cycle, verification.path, rationale_dirs, training.path, model.path, history,
                            config_from_json(config), parent_run,
                            evaluation.path if evaluation is not None else None,
                            handed_on=handed_on.path, chosen_out=chosen.path)
    layout.write_decision(out.path, summary, decision, [*history, summary], {
        "cycle": cycle, "model": model.path, "handed_on": chosen.path,
        "training_files": training_files(verification.path, rationale_dirs)})
    log_metrics(metrics, summary)
    return decision["continue"]
