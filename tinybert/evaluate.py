"""Stage evaluate: teacher and student on dev and test, size and CPU throughput, plots."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from tinybert import task_defaults
from tinybert.batching import encode_task, read_task_labels, read_task_split
from tinybert.config import EvaluateConfig
from tinybert.io import atomic_dir, write_json
from tinybert.models import batched_logits, folder_size, load_classifier, load_tokenizer, parameter_count

SPLITS = ("dev", "test")


def task_metrics(labels: dict, gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Accuracy + F1 (macro beyond two classes) + MCC for classification; Pearson/Spearman for regression."""
    if labels["task_type"] == "regression":
        return {"pearson": float(pearsonr(predicted, gold)[0]), "spearman": float(spearmanr(predicted, gold)[0])}
    gold, predicted = gold.astype(int), predicted.astype(int)
    average = "binary" if labels["num_labels"] == 2 else "macro"
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "f1": float(f1_score(gold, predicted, average=average, zero_division=0)),
        "mcc": float(matthews_corrcoef(gold, predicted)),
    }


def predict(model, tokenizer, rows: dict, max_seq_len: int, batch_size: int, regression: bool) -> np.ndarray:
    data = encode_task(tokenizer, rows, max_seq_len)
    logits = batched_logits(model, data, batch_size, tokenizer.pad_token_id)
    return (logits.squeeze(-1) if regression else logits.argmax(-1)).numpy()


def random_batch(vocab_size: int, batch: int, seq_len: int, device: str = "cpu") -> dict:
    """A fixed batch of token ids (seeded, above the special tokens), every position attended:
    speed does not depend on which tokens they are."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab_size, (batch, seq_len), generator=generator).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def forward_seconds(model, inputs: dict) -> float:
    """Wall time of one forward of ``inputs``."""
    cuda = inputs["input_ids"].device.type == "cuda"
    if cuda:  # GPU work is asynchronous: time it finished, not launched
        torch.cuda.synchronize()
    began = time.perf_counter()
    model(**inputs)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - began


@torch.inference_mode()
def throughput(model, vocab_size: int, batch: int, seq_len: int, repeats: int, device: str = "cpu") -> float:
    """Examples per second, model as users load it (default attention), inference mode, best
    of ``repeats`` timed forwards after one warm-up."""
    model.eval().to(device)
    inputs = random_batch(vocab_size, batch, seq_len, device)
    with torch.inference_mode():
        model(**inputs)  # warm-up
        best = min(forward_seconds(model, inputs) for _ in range(repeats))
    return batch / best


def run(cfg: EvaluateConfig, *, task_dir: Path, teacher_dir: Path, student_dir: Path, out_dir: Path) -> None:
    labels = read_task_labels(task_dir)
    regression = labels["task_type"] == "regression"
    # GLUE MNLI adds dev_mismatched; older task folders name no splits.
    names = labels.get("eval_splits", list(SPLITS))
    splits = {name: read_task_split(Path(task_dir) / f"{name}.parquet") for name in names}
    # The length the teacher and the student were trained at, unless set: a pair task scored at
    # a single sentence's 64 would lose the end of its second sentence.
    max_seq_len = task_defaults.max_seq_len(cfg.max_seq_len, pairs=bool(labels.get("text_b")))
    report: dict = {"task": {k: labels.get(k) for k in ("task_type", "metric", "label_names", "source")},
                    "max_seq_len": max_seq_len}
    if not regression:
        train_labels = np.asarray(read_task_split(Path(task_dir) / "train.parquet")["label"], dtype=int)
        majority = int(np.bincount(train_labels).argmax())
        report["majority_baseline"] = {
            name: float(np.mean(np.asarray(rows["label"], dtype=int) == majority)) for name, rows in splits.items()
        }

    for role, folder in (("teacher", teacher_dir), ("student", student_dir)):
        model = load_classifier(folder, what=role)
        tokenizer = load_tokenizer(folder, role)
        entry = {"parameters": parameter_count(model), "disk_bytes": folder_size(folder)}
        for name, rows in splits.items():
            predicted = predict(model, tokenizer, rows, max_seq_len, cfg.batch_size, regression)
            entry[name] = task_metrics(labels, np.asarray(rows["label"], dtype=float), predicted)
        entry["throughput_per_s"] = throughput(
            model, model.config.vocab_size, cfg.throughput_batch, cfg.throughput_seq_len, cfg.throughput_repeats
        )
        report[role] = entry

    metric = labels["metric"] if labels["metric"] in report["student"]["dev"] else next(iter(report["student"]["dev"]))
    report["retention"] = {
        name: report["student"][name][metric] / report["teacher"][name][metric] if report["teacher"][name][metric] else None
        for name in names
    }
    report["speedup"] = report["student"]["throughput_per_s"] / report["teacher"]["throughput_per_s"]
    report["size_ratio"] = report["teacher"]["parameters"] / report["student"]["parameters"]
    report["metric"] = metric
    report["splits"] = names

    with atomic_dir(out_dir) as tmp:
        write_json(tmp / "metrics.json", report)
        _bar_chart(report, metric, tmp / "teacher_vs_student.png")
        (tmp / "comparison.csv").write_text(
            "model,split,value\n"
            + "".join(f"{role},{name},{report[role][name][metric]:.6f}\n" for role in ("teacher", "student") for name in names)
        )


def _bar_chart(report: dict, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = report.get("splits", list(SPLITS))
    x = np.arange(len(names))
    for offset, role in ((-0.2, "teacher"), (0.2, "student")):
        values = [report[role][name][metric] for name in names]
        bars = ax.bar(x + offset, values, width=0.4, label=role)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    if "majority_baseline" in report and metric == "accuracy":
        ax.axhline(max(report["majority_baseline"].values()), color="grey", linestyle="--", linewidth=1, label="majority")
    ax.set_xticks(x, names)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("teacher vs student")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
