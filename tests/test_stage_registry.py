"""The stage list is the one source of truth for dvc.yaml, the CLI and the Prefect flow."""
from pathlib import Path

import pytest
import yaml

from tinybert.dvcfile import render
from tinybert.stages import BY_NAME, STAGES, dvc_yaml, producer_of


def test_committed_dvc_yaml_is_generated_from_the_stage_list():
    assert Path("dvc.yaml").read_text() == render()


def test_every_stage_is_one_cli_subcommand_and_one_dvc_stage():
    from tinybert.cli import app

    commands = {c.name for c in app.registered_commands}
    assert {s.name for s in STAGES} <= commands
    assert list(dvc_yaml()["stages"]) == [s.name for s in STAGES]
    assert all(dvc_yaml()["stages"][s.name]["cmd"] == f"tinybert {s.name}" for s in STAGES)


def _declared_code_dependencies():
    """(stage name, path) for every dependency in dvc.yaml that is not a pipeline artifact."""
    for stage in STAGES:
        for dep in dvc_yaml()["stages"][stage.name]["deps"]:
            if not dep.startswith("data/"):
                yield stage.name, dep


def test_every_declared_code_dependency_exists():
    for stage, dep in _declared_code_dependencies():
        assert Path(dep).is_file(), f"{stage}: {dep}"


def test_no_code_dependency_is_an_empty_file():
    # DVC prints "WARNING: '<file>' is empty." for each empty dependency, on every run of the
    # stage: an empty package __init__ would put that noise into every distillation stage's log.
    for stage, dep in _declared_code_dependencies():
        assert Path(dep).stat().st_size > 0, f"{stage}: {dep} is empty"


def test_stages_are_listed_after_the_stages_they_read_from():
    seen = set()
    for stage in STAGES:
        for dep in stage.deps.values():
            assert producer_of(dep).name in seen, f"{stage.name} reads {dep} before it is produced"
        seen.add(stage.name)


def test_params_sections_passed_to_each_stage_exist_in_params_yaml():
    params = yaml.safe_load(open("params.yaml"))
    for stage in STAGES:
        assert set(stage.sections) <= set(params), stage.name


def test_the_two_task_distillation_steps_are_stages_that_track_only_what_they_read():
    from tinybert.config import TaskDistillConfig

    first, second = BY_NAME["task-distill-intermediate"], BY_NAME["task-distill"]
    assert second.deps["intermediate_dir"] == first.outs["out_dir"]
    # the prediction step's schedule, temperature and loss weight: the first stage reads none of them
    for name in ("prediction", "temperature", "weights", "weights.prediction"):
        assert f"task_distill.{name}" not in first.params, name
    assert "task_distill.intermediate" not in second.params
    # every other setting is tracked by both, the loss weights one by one in the first
    assert "task_distill.weights" in second.params
    for name in set(TaskDistillConfig.setting_names()) - {"prediction", "temperature", "weights.prediction",
                                                          "intermediate"}:
        assert f"task_distill.{name}" in first.params, name
        assert f"task_distill.{name.split('.')[0]}" in second.params, name


def test_the_first_steps_checkpoint_key_holds_exactly_the_settings_its_stage_tracks():
    from tinybert.config import TaskDistillConfig

    def dotted(settings: dict, prefix: str = "") -> set[str]:
        return {name for key, value in settings.items()
                for name in (dotted(value, f"{prefix}{key}.") if key == "weights" else [f"{prefix}{key}"])}

    # a resumed first step must not continue a run made with other settings it reads, and a
    # change to what it does not read must not throw its checkpoint away
    key = dotted(TaskDistillConfig().intermediate_settings())
    tracked = {p.removeprefix("task_distill.") for p in BY_NAME["task-distill-intermediate"].params
               if p.startswith("task_distill.")}
    assert key == tracked
    assert not key & set(TaskDistillConfig.PREDICTION_ONLY)


def test_the_flow_runs_the_registry_stages():
    import inspect

    import flows.pipeline

    assert "STAGES" in inspect.getsource(flows.pipeline.pipeline.fn)
    assert BY_NAME["teacher"].retries >= 1


def test_a_stage_depends_on_every_file_its_code_runs_through():
    prepare_task = set(BY_NAME["prepare-task"].code)
    # GLUE folders are read through data/glue.py, errors raised through errors.py
    assert {"tinybert/data/task.py", "tinybert/data/glue.py", "tinybert/errors.py", "tinybert/__init__.py"} <= prepare_task
    assert "tinybert/augment/stopwords.txt" in BY_NAME["augment"].code  # a data file its code reads
    assert {"tinybert/distill/objective.py", "tinybert/losses.py"} <= set(BY_NAME["general-distill"].code)
    assert "tinybert/augment/mlm.py" not in BY_NAME["teacher"].code


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """Write a package ``pkg`` of the given files and point code_deps at it instead of tinybert."""
    from tinybert import code_deps

    def write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "pkg" / name).write_text(text)
        return tmp_path / "pkg"

    monkeypatch.setattr(code_deps, "ROOT", tmp_path)
    monkeypatch.setattr(code_deps, "PACKAGE", "pkg")
    code_deps._imported.cache_clear()
    yield write
    code_deps._imported.cache_clear()


def test_code_dependencies_follow_relative_imports_and_imports_inside_functions(fake_package):
    from tinybert import code_deps

    fake_package({
        "__init__.py": "",
        "sub/__init__.py": "",
        "a.py": "import os\n\ndef f():\n    from pkg.sub import b\n",
        "sub/b.py": "from .. import c\nfrom . import missing_name\n",
        "c.py": "",
        "unused.py": "",
    })
    assert code_deps.code_dependencies("pkg.a") == (
        "pkg/__init__.py", "pkg/a.py", "pkg/c.py", "pkg/sub/__init__.py", "pkg/sub/b.py")


def test_the_code_digest_changes_with_a_dependency_and_only_with_one(fake_package):
    from tinybert import code_deps

    package = fake_package({"__init__.py": "", "a.py": "from pkg import b\n", "b.py": "X = 1\n", "unused.py": ""})
    before = code_deps.code_sha256("pkg.a")
    (package / "unused.py").write_text("Y = 2\n")
    assert code_deps.code_sha256("pkg.a") == before
    (package / "b.py").write_text("X = 2\n")
    assert code_deps.code_sha256("pkg.a") != before


def test_a_missing_manifest_names_the_stage_that_writes_the_folder(tmp_path):
    from tinybert.errors import InputError
    from tinybert.io import SHARDED_OUTPUTS, read_manifest

    writers = {Path(out).name: s.name for s in STAGES if s.sharded for out in s.outs.values()}
    assert SHARDED_OUTPUTS == writers
    with pytest.raises(InputError, match=r"data/augmented: no manifest.json; run `dvc repro augment` first"):
        read_manifest(tmp_path / "data" / "augmented")
