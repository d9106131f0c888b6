"""The pipeline's stages, written once.

Each stage is a function in ``tinybert`` that reads declared files and writes declared files.
``dvc.yaml`` is generated from this list (``tinybert dvc-yaml``; a test checks the committed
file matches) and the Prefect flow iterates over it, so the two cannot drift.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from tinybert.code_deps import code_dependencies
from tinybert.config import AugmentConfig, CorpusConfig, Params, TaskDistillConfig, load_params

@dataclass(frozen=True)
class Stage:
    name: str
    function: str  # "module:function", imported only when the stage runs
    sections: tuple[str, ...]  # params.yaml sections passed positionally, in order
    deps: dict[str, str] = field(default_factory=dict)  # keyword -> path read
    outs: dict[str, str] = field(default_factory=dict)  # keyword -> path written
    retries: int = 0  # Prefect retries: for stages whose failure can be transient (I/O, memory)
    # The parameters DVC tracks, when narrower than whole sections: a stage that reads one
    # field of a section must not rerun when another field of it changes.
    params: tuple[str, ...] | None = None
    trains: bool = False  # a training stage: TINYBERT_PROCESSES=N runs it in N processes
    # Its module also offers plan(*sections, **deps) -> ShardJob and
    # publish(*sections, job, results, out_dir): Prefect maps its shards over a task runner.
    sharded: bool = False

    def call(self, params: Params) -> None:
        module, func = self.function.split(":")
        fn = getattr(importlib.import_module(module), func)
        fn(*self.arguments(params), **{k: Path(v) for k, v in {**self.deps, **self.outs}.items()})

    def arguments(self, params: Params) -> list:
        return [getattr(params, section) for section in self.sections]

    @property
    def module(self):
        return importlib.import_module(self.function.split(":")[0])

    @property
    def code(self) -> tuple[str, ...]:
        """The source (and data) files its module runs through: DVC dependencies of the stage."""
        return code_dependencies(self.function.split(":")[0])

    @property
    def cmd(self) -> str:
        return f"tinybert {self.name}"


STAGES: tuple[Stage, ...] = (
    Stage(
        "prepare-corpus",
        "tinybert.data.corpus:run",
        ("backbone", "corpus"),
        outs={"out_dir": "data/corpus"},
        retries=2,
        sharded=True,
        # Not how the work is cut up or spread: the output does not depend on it.
        params=("backbone", *(f"corpus.{key}" for key in CorpusConfig.model_fields
                              if key not in ("workers", "shard_documents"))),
    ),
    Stage(
        "prepare-task",
        "tinybert.data.task:run",
        ("task",),
        outs={"out_dir": "data/task"},
        retries=2,
    ),
    Stage(
        "mlm",
        "tinybert.mlm:run",
        ("backbone", "mlm"),
        deps={"corpus_dir": "data/corpus"},
        outs={"out_dir": "data/mlm"},
        retries=1,
        trains=True,
    ),
    Stage(
        "augment",
        "tinybert.augment.stage:run",
        ("augment",),
        deps={"task_dir": "data/task", "mlm_dir": "data/mlm"},
        outs={"out_dir": "data/augmented"},
        retries=1,
        sharded=True,
        # Not how the work is cut (workers, shard_rows) or batched (batch_size, batch_tokens): the
        # output does not depend on them (README, "Augmentation at scale"), and raising a batch for a GPU
        # should not rebuild everything downstream.
        params=tuple(f"augment.{key}" for key in AugmentConfig.model_fields
                     if key not in ("workers", "shard_rows", "batch_size", "batch_tokens")),
    ),
    Stage(
        "teacher",
        "tinybert.teacher:run",
        ("backbone", "teacher"),
        deps={"task_dir": "data/task"},
        outs={"out_dir": "data/teacher"},
        retries=1,
        trains=True,
    ),
    Stage(
        "general-distill",
        "tinybert.distill.general:run",
        ("backbone", "general_distill", "objective"),
        deps={"corpus_dir": "data/corpus"},
        outs={"out_dir": "data/general_student"},
        retries=1,
        trains=True,
    ),
    Stage(
        "teacher-logits",
        "tinybert.distill.teacher_logits:run",
        ("task_distill",),
        deps={"augmented_dir": "data/augmented", "teacher_dir": "data/teacher"},
        outs={"out_dir": "data/teacher_logits"},
        # The device it runs on is the prediction step's (info.json records the one "auto" chose);
        # distillation / one_step decide whether the prediction step reads the logits at all.
        params=("task_distill.max_seq_len", "task_distill.prediction.device",
                "task_distill.distillation", "task_distill.one_step"),
        retries=1,  # it resumes from its finished parts, so a retry costs only the unfinished ones
    ),
    Stage(
        "task-distill-intermediate",
        "tinybert.distill.task:run_intermediate",
        ("task_distill", "objective"),
        deps={
            "task_dir": "data/task",
            "augmented_dir": "data/augmented",
            "teacher_dir": "data/teacher",
            "general_dir": "data/general_student",
        },
        outs={"out_dir": "data/intermediate_student"},
        # Not what only the prediction step reads: changing it reruns only the stage below.
        params=(*(f"task_distill.{name}" for name in TaskDistillConfig.setting_names()
                  if name not in TaskDistillConfig.PREDICTION_ONLY), "objective"),
        retries=1,
        trains=True,
    ),
    Stage(
        "task-distill",
        "tinybert.distill.task:run",
        ("task_distill", "objective"),
        deps={
            "task_dir": "data/task",
            "augmented_dir": "data/augmented",
            "teacher_dir": "data/teacher",
            "intermediate_dir": "data/intermediate_student",
            "logits_dir": "data/teacher_logits",
            # one_step's projections start from general distillation's here
            "general_dir": "data/general_student",
        },
        outs={"out_dir": "data/student"},
        # Not the first step's schedule: it reaches this stage through data/intermediate_student.
        params=(*(f"task_distill.{key}" for key in TaskDistillConfig.model_fields if key != "intermediate"), "objective"),
        retries=1,
        trains=True,
    ),
    Stage(
        "evaluate",
        "tinybert.evaluate:run",
        ("evaluate",),
        deps={"task_dir": "data/task", "teacher_dir": "data/teacher", "student_dir": "data/student"},
        outs={"out_dir": "data/evaluation"},
    ),
)

BY_NAME = {stage.name: stage for stage in STAGES}

# Loss curves of the training stages and the comparison chart, shown by `dvc plots show`.
PLOTS = {
    "data/mlm/train_log.csv": "mlm",
    "data/teacher/train_log.csv": "teacher",
    "data/general_student/train_log.csv": "general-distill",
    "data/intermediate_student/intermediate_log.csv": "task-distill (intermediate)",
    "data/student/prediction_log.csv": "task-distill (prediction)",
}
METRICS = ("data/evaluation/metrics.json", "data/mlm/training.json")


def producer_of(path: str) -> Stage | None:
    """The stage whose output contains ``path``."""
    target = Path(path)
    for stage in STAGES:
        for out in stage.outs.values():
            if target == Path(out) or Path(out) in target.parents:
                return stage
    return None


def run_stage(name: str, params_path: str | Path = "params.yaml") -> None:
    BY_NAME[name].call(load_params(params_path))


def dvc_yaml() -> dict:
    """The ``dvc.yaml`` content implied by :data:`STAGES`."""
    stages = {}
    for stage in STAGES:
        stages[stage.name] = {
            "cmd": stage.cmd,
            "deps": [*stage.deps.values(), *stage.code],
            "params": list(stage.params or stage.sections),
            "outs": list(stage.outs.values()),
        }
    return {
        "stages": stages,
        "metrics": list(METRICS),
        "plots": [
            {path: {"x": "step", "y": "loss", "title": f"{title} training loss"}} for path, title in PLOTS.items()
        ]
        + ["data/evaluation/teacher_vs_student.png"],
    }
