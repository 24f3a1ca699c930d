import re
from pathlib import Path

import pytest

from videostar.cli import main
from videostar.config import RunConfig, config_from_dict, load_config
from videostar.errors import ConfigError

pytestmark = pytest.mark.fast  # no model, no server: `make test-fast`


def test_defaults_follow_the_released_recipe():
    cfg = RunConfig()
    assert cfg.generate.temperature == 0.2 and cfg.generate.max_new_tokens == 1024
    assert cfg.video.num_frames == 8 and cfg.sft.lr == 2e-5
    assert (cfg.sft.lora.r, cfg.sft.lora.alpha) == (64, 16)
    assert cfg.verify.class_ratio == 0.85 and cfg.verify.range_iou == 0.5


def test_nested_fields_and_int_to_float():
    cfg = config_from_dict({"sft": {"lr": 1, "lora": {"r": 8}}, "decide": {"max_cycles": 5}})
    assert cfg.sft.lr == 1.0 and isinstance(cfg.sft.lr, float)
    assert cfg.sft.lora.r == 8 and cfg.sft.lora.alpha == 16 and cfg.decide.max_cycles == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"generate": {"temprature": 0.5}}, "generate.temprature: unknown field"),
        ({"sft": {"lora": {"r": "big"}}}, "sft.lora.r: expected int"),
        ({"sft": {"lora": {"enabled": 1}}}, "sft.lora.enabled: expected bool"),
        ({"video": {"num_frames": True}}, "video.num_frames: expected int"),
        ({"generate": {"batch_size": 0}}, "generate.batch_size: invalid value"),
        ({"rationalize": {"hint": "no placeholder"}}, "rationalize.hint: invalid value"),
        ({"templates": {"x": "not a list"}}, "templates.x: expected a list"),
        ({"verify": []}, "verify: expected a mapping"),
        ({"rlaif": {"ppo": {"kl_coeff": 0.2}}}, "rlaif.ppo.kl_coeff: unknown field"),
        ({"rlaif": {"frames_per_clip": 32}}, "rlaif.frames_per_clip: invalid value"),
        ({"rlaif": {"quantize": "8bit"}}, "rlaif.quantize: invalid value"),
        ({"rlaif": {"reward_model": {"heldout_fraction": 1.0}}},
         "rlaif.reward_model.heldout_fraction: invalid value"),
        ({"pipeline": {"sft": {"launcher": {"kind": "mpi"}}}}, "pipeline.sft.launcher.kind: invalid value"),
        ({"pipeline": {"sft": {"launcher": {"kind": "torchrun", "num_nodes": 2}}}},
         "pipeline.sft.launcher.num_nodes: invalid value"),
        ({"pipeline": {"verify": {"launcher": {"kind": "torchrun"}}}},
         "pipeline.verify.launcher.kind: invalid value"),
    ],
)
def test_bad_fields_are_named(data, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config_from_dict(data)


def test_load_config_names_the_file(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("sft:\n  lr: [1]\n")
    with pytest.raises(ConfigError, match=f"{path}: sft.lr: expected float"):
        load_config(path)


def test_cli_exits_2_on_bad_config(tmp_path: Path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("decide:\n  max_cycle: 3\n")
    code = main(["--config", str(path), "decide", "--history", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "decide.max_cycle: unknown field" in err[0]


def test_example_configs_are_shipped_and_never_overwrite(tmp_path: Path, capsys):
    from videostar.configs import example, examples

    repo = Path(__file__).resolve().parents[2] / "configs"
    assert examples() == sorted(p.stem for p in repo.glob("*.yaml"))
    for name in examples():  # each one loads as a run configuration
        (tmp_path / f"{name}.yaml").write_text(example(name))
        load_config(tmp_path / f"{name}.yaml")
    assert main(["config", "example", "tiny"]) == 0
    assert capsys.readouterr().out == (repo / "tiny.yaml").read_text()
    kept = tmp_path / "mine.yaml"
    kept.write_text("my settings\n")
    assert main(["config", "example", "tiny", "-o", str(kept)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {kept}: already exists (not overwritten)"
    assert kept.read_text() == "my settings\n"
    with pytest.raises(SystemExit) as stop:
        main(["config", "example", "huge"])
    assert stop.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err


def _numeric_fields(cls: type, prefix: tuple = ()) -> list[tuple[tuple, type]]:
    """Every int or float setting under ``cls``, as a path of keys, found from the dataclasses
    (a field added to any section is found too)."""
    import dataclasses
    import types
    import typing

    from videostar.config.fields import numeric_type

    found = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        if dataclasses.is_dataclass(tp):
            found += _numeric_fields(tp, (*prefix, f.name))
        elif item is not None and dataclasses.is_dataclass(item):
            found += _numeric_fields(item, (*prefix, f.name, 0))
        elif numeric_type(hints[f.name]):
            found.append(((*prefix, f.name), numeric_type(hints[f.name])))
    return found


def _with(path: tuple, value: object) -> dict:
    """The default configuration as a mapping with ``value`` at ``path``."""
    from videostar.config import config_to_dict

    data = config_to_dict(RunConfig())
    node = data
    for key in path[:-1]:
        if isinstance(key, int) and not node:  # a list of sections empty by default: give it one
            pytest.skip("no element to hold the field")
        node = node[key]
    node[path[-1]] = value
    return data


NUMERIC_FIELDS = _numeric_fields(RunConfig)


def test_every_numeric_setting_is_found():
    names = {".".join(map(str, p)) for p, _ in NUMERIC_FIELDS}
    assert {"sft.seed", "rlaif.ppo.seed", "scenegraph.max_questions", "pipeline.sft.launcher.poll_seconds",
            "pipeline.sft.launcher.procs_per_node", "verify.class_ratio"} <= names
    assert len(names) > 100


@pytest.mark.parametrize(("path", "tp"), NUMERIC_FIELDS, ids=lambda x: ".".join(map(str, x))
                         if isinstance(x, tuple) else x.__name__)
def test_every_numeric_setting_has_a_range(path: tuple, tp: type):
    """Each number refuses a value below its range and one above it, naming its field."""
    from videostar.config.fields import SEED_MAX, is_seed

    name = ".".join(map(str, path))
    too_big = SEED_MAX + 1 if is_seed(path[-1]) else (2**64 if tp is int else float("inf"))
    for bad in (tp(-1), too_big) + ((float("nan"),) if tp is float else ()):
        with pytest.raises(ConfigError, match=f"^{re.escape(name)}: "):
            config_from_dict(_with(path, bad))


def test_decide_metrics_are_what_cycles_and_suites_produce():
    """``decide.metric`` is checked at load against lists kept in the config; they name what a
    cycle's summary and each suite's report hold."""
    from videostar.config.recipe import CYCLE_METRICS, EVAL_METRICS, EVAL_SUITES
    from videostar.config.scenegraph import QUESTION_TYPES
    from videostar.eval import scenegraph_qa, tempcompass
    from videostar.star.decide import summarize_cycle

    tables = {"per_label_type": {}, "per_task": {}, "per_group": {}}
    summary = summarize_cycle(0, {"total": 4, "passed": 2, **tables}, [{"passed": 1, **tables}])
    numbers = {k for k, v in summary.items() if isinstance(v, int | float)}
    assert set(CYCLE_METRICS) == numbers - {"cycle", "questions"}
    assert set(EVAL_METRICS) == set(EVAL_SUITES)
    assert {f"accuracy/{t}" for t in tempcompass.TASKS} <= set(EVAL_METRICS["tempcompass"])
    step = {f"accuracy_steps_{b}" for b in scenegraph_qa.BUCKETS} | {f"accuracy.{t}" for t in QUESTION_TYPES}
    assert step <= set(EVAL_METRICS["scenegraph"])
