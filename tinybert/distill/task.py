"""Stage task-distill: the general student learns the task from the fine-tuned teacher on the
augmented training set, in the reference's two steps: intermediate layers, then prediction layer."""
from __future__ import annotations

from pathlib import Path

import torch

from tinybert.batching import encode_task
from tinybert.capture import enable_capture
from tinybert.config import TaskDistillConfig, TrainSchedule
from tinybert.distill.loop import distill
from tinybert.distill.matches import build_matches
from tinybert.distill.objective import DistillationObjective
from tinybert.io import read_json, read_manifest, read_sharded
from tinybert.models import load_classifier, load_tokenizer, publish_trained_model
from tinybert.training import BatchSource, checkpoint_dir, seed_everything

STEPS = ("intermediate", "prediction")


def run(
    cfg: TaskDistillConfig,
    *,
    task_dir: Path,
    augmented_dir: Path,
    teacher_dir: Path,
    general_dir: Path,
    out_dir: Path,
) -> None:
    labels = read_json(Path(task_dir) / "labels.json")
    regression = labels["task_type"] == "regression"
    seed_everything(cfg.intermediate.seed)
    tokenizer = load_tokenizer(teacher_dir, "teacher")
    teacher = enable_capture(load_classifier(teacher_dir, what="teacher"))
    student = enable_capture(load_classifier(general_dir, num_labels=labels["num_labels"], what="general student"))
    if regression:
        student.config.problem_type = "regression"

    rows = read_sharded(augmented_dir, ["text", "text_b", "label"]).to_pydict()
    data = encode_task(tokenizer, rows, cfg.max_seq_len)
    pad = tokenizer.pad_token_id
    batches = BatchSource(len(data), lambda idx: data.collate(idx, pad_id=pad), data.lengths)

    s_cfg, t_cfg = student.config, teacher.config
    ckpt = checkpoint_dir("task-distill", cfg.model_dump(), read_manifest(augmented_dir)["shards"], str(teacher_dir), str(general_dir))
    logs: dict[str, list[dict]] = {}
    for step_name, schedule in zip(STEPS, (cfg.intermediate, cfg.prediction)):
        logs[step_name] = _run_step(step_name, schedule, cfg, student, teacher, s_cfg, t_cfg, batches, regression, ckpt)

    report = {"augmented_rows": len(data), **{f"{k}_steps": len(v) for k, v in logs.items()}}
    publish_trained_model(out_dir, student, tokenizer, {f"{k}_log": v for k, v in logs.items()}, report, ckpt)


def _run_step(step_name, schedule: TrainSchedule, cfg, student, teacher, s_cfg, t_cfg, batches, regression, ckpt: Path):
    """One of the two steps; a finished step is remembered in the checkpoint folder so a
    resumed stage does not repeat it."""
    done = ckpt / f"{step_name}.done.pt"
    if done.is_file():
        state = torch.load(done, weights_only=False)
        student.load_state_dict(state["student"])
        return state["log"]
    matches = build_matches(
        cfg.mapping,
        s_cfg.num_hidden_layers,
        t_cfg.num_hidden_layers,
        cfg.weights,
        intermediate=step_name == "intermediate",
        prediction=step_name == "prediction",
    )
    objective = DistillationObjective(
        matches,
        s_cfg.hidden_size,
        t_cfg.hidden_size,
        student_heads=s_cfg.num_attention_heads,
        teacher_heads=t_cfg.num_attention_heads,
        shared_projection=cfg.shared_projection,
        temperature=cfg.temperature,
        regression=regression,
    )
    log = distill(
        name=f"task-distill/{step_name}",
        student=student,
        teacher=teacher,
        objective=objective,
        batches=batches,
        schedule=schedule,
        checkpoint_to=ckpt / step_name,
    )
    ckpt.mkdir(parents=True, exist_ok=True)
    torch.save({"student": student.state_dict(), "log": log}, done)
    return log
