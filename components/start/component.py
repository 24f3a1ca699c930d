"""start: fail fast on a bad MLflow or object store and open the pipeline run's MLflow run."""

from kfp.dsl import Dataset, Output

POOL = "cpu"


def start(config: str, pipeline_run: str, out: Output[Dataset]) -> str:
    """Check MLflow and the store, open the parent MLflow run (its id is the output; '' when
    tracking is off) and write the empty cycle history the first decision starts from."""
    from videostar.config import config_from_json
    from videostar.star.steps import start as run

    return run(config_from_json(config), pipeline_run, out.path)
