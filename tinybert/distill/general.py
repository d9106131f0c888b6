"""Stage general-distill: a randomly initialised student learns from the pre-trained backbone
on the unlabelled corpus (embedding, attention and hidden losses; never the prediction loss)."""
from __future__ import annotations

from pathlib import Path

from tinybert.assets import resolve
from tinybert.batching import encode_corpus
from tinybert.config import GENERAL_NOTHING_TO_DISTIL, BackboneConfig, GeneralDistillConfig, ObjectiveSwitches
from tinybert.distill.loop import distill
from tinybert.distill.objective import PROJECTIONS_FILE, build_objective
from tinybert.errors import InputError
from tinybert.io import content_sha256, read_manifest
from tinybert.models import load_encoder, load_tokenizer, new_student, parameter_count, publish_trained_model
from tinybert.training import BatchSource, checkpoint_dir, seed_everything


def run(backbone: BackboneConfig, cfg: GeneralDistillConfig, switches: ObjectiveSwitches, *, corpus_dir: Path,
        out_dir: Path) -> None:
    cfg = switches.applied_to(cfg)
    seed_everything(cfg.train.seed)
    manifest = read_manifest(corpus_dir)
    tokenizer = load_tokenizer(backbone.model, "backbone.model")
    teacher = load_encoder(backbone.model, "backbone.model")
    student = new_student(teacher.config, cfg.student)
    objective = build_objective(cfg, student.config, teacher.config, intermediate=True, prediction=False,
                                mapping_field=switches.mapping_field("general_distill"))
    if not objective.matches:
        # load_params refuses this too; here for layer_weights of 0 and settings built in code
        raise InputError(GENERAL_NOTHING_TO_DISTIL)
    batches = corpus_batches(corpus_dir, cfg.padding, tokenizer.pad_token_id)
    ckpt = checkpoint_dir("general-distill", cfg.model_dump(), content_sha256(resolve(backbone.model)), manifest["shards"],
                          module=__name__)
    log = distill(
        name="general-distill",
        student=student,
        teacher=teacher,
        objective=objective,
        batches=batches,
        schedule=cfg.train,
        checkpoint_to=ckpt,
    )
    report = {
        "matches": [m.__dict__ for m in objective.matches],
        "teacher": backbone.model,
        "student_parameters": parameter_count(student),
        "corpus_sequences": batches.num_examples,
        "steps": len(log),
        "final_loss": log[-1]["loss"],
    }
    publish_trained_model(out_dir, student, tokenizer, {"train_log": log}, report, ckpt,
                          tensor_files={PROJECTIONS_FILE: objective.projection_tensors()})


def corpus_batches(corpus_dir: Path, padding: str, pad_id: int) -> BatchSource:
    """The corpus's sequences, batched and padded as ``padding`` says (``MatchSettings.padding``)."""
    data = encode_corpus(corpus_dir)
    width = read_manifest(corpus_dir)["max_seq_len"] if padding == "max_length" else None
    return BatchSource(len(data), lambda indices: data.collate(indices, pad_id=pad_id, width=width))
