"""Augmentation speed: Algorithm 1 run literally (the reference's way) against the fast path.

On a fixed sample of the movie-review training split (the first N rows of data/task/train.parquet)
with the pipeline's masked LM (data/mlm) and GloVe 6B 50d (first 100k vectors), K=15, p_t=0.4,
N_a=4, one run measures sentences per second of:
1. the literal baseline as the reference runs it: one MLM forward per masked word, batch 1,
   gradients on, the LM head over every position, GloVe similarities recomputed per word
   (tests/augment/reference.py);
2. the same baseline under inference mode;
3. the fast path (tinybert.augment), chunk by chunk as the stage runs it: MLM inputs batched across
   sentences and positions under inference mode, the head only at masked positions, on a GPU the
   next chunk's batches queued while the host samples the current one, GloVe top-K batched and
   cached per word (on its own CUDA stream); and where its time goes;
and checks that all three write the same sentences; then the fast path under bf16 autocast
(``augment.precision: bf16``), with how far its candidates differ from the exact ones. Then the augment stage itself (a subprocess
each): peak memory at two dataset sizes, and its speed with each of ``--workers`` local worker
processes (on a GPU they share it, each doing its host work while the others' batches run).

    python benchmarks/augment.py [--sentences 48] [--memory-sizes 500 2000] [--device auto|cpu|cuda]
    python benchmarks/augment.py --memory-sizes --worker-rows 0   # the speed figures alone
    python benchmarks/augment.py --device cuda --sentences 800 --batch-size 1024 --memory-sizes \
        --worker-rows 4000 --shard-rows 500 --workers 1 2 4        # a GPU machine
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.augment.reference import ReferenceAugmenter  # noqa: E402
from tinybert.augment.algorithm import candidate_sets, example_rng  # noqa: E402
from tinybert.augment.glove import GloveNeighbours, load_glove  # noqa: E402
from tinybert.augment.mlm import MlmCandidates  # noqa: E402
from tinybert.augment.pipeline import AugmentTools, augmented_chunks  # noqa: E402
from tinybert.augment.stage import examples_per_chunk, load_mlm  # noqa: E402
from tinybert.augment.words import basic_words, load_stopwords  # noqa: E402
from allocators import NAMES as ALLOCATOR_NAMES  # noqa: E402  (beside this file)
from stage_process import run_measured  # noqa: E402  (beside this file)

K, P_T, N_AUG, SEED = 15, 0.4, 4, 42


def make_tools(model, tokenizer, kv, batch_size: int, device: str, precision: str = "fp32") -> AugmentTools:
    """The stage's tools, built outside the timings as the stage builds them once per process; a
    new GloveNeighbours each time, so every timed run starts with an empty word cache."""
    return AugmentTools(tokenizer, MlmCandidates(model, tokenizer, k=K, batch_size=batch_size, device=device,
                                                 precision=precision),
                        GloveNeighbours(kv, k=K, device=device), load_stopwords())


def fast_path(tools: AugmentTools, texts, ids, chunk: int, spent: dict[str, float] | None = None) -> list[list[str]]:
    """The augmented sentences of every text, through the stage's chunked loop. With ``spent``,
    the seconds spent in MLM batches (inputs, forward, top-k) and in GloVe searches are added to it."""
    if spent is not None:  # _tokens waits for its batch on the GPU, so host clocks are right
        tools.mlm._launch = clocked(tools.mlm._launch, spent, "MLM batches")
        tools.mlm._tokens = clocked(tools.mlm._tokens, spent, "MLM batches")
        tools.glove.neighbours = clocked(tools.glove.neighbours, spent, "GloVe search")
    out = []
    for _, variants in augmented_chunks([(t,) for t in texts], ids, tools, p_t=P_T, n_aug=N_AUG, seed=SEED,
                                        chunk_examples=chunk):
        out.extend(v[0] for v in variants)
    return out


def candidate_lists(tools: AugmentTools, texts) -> list:
    """Every text's candidate sets (untimed: for comparing precisions)."""
    return candidate_sets([basic_words(tools.tokenizer, t) for t in texts], tools.mlm, tools.glove, tools.stopwords)


def profile(tools: AugmentTools, texts, ids, chunk: int, device: str, path: Path) -> None:
    """torch.profiler's operator table of one fast-path run, by device time, then by host time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        fast_path(tools, texts, ids, chunk)
    table = prof.key_averages()
    orders = (["self_device_time_total"] if device == "cuda" else []) + ["self_cpu_time_total"]
    path.write_text("\n\n".join(f"sorted by {key}\n" + table.table(sort_by=key, row_limit=30) for key in orders) + "\n")


def clocked(fn, spent: dict[str, float], name: str):
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - began
    return wrapper


def make_reference(model, tokenizer, kv, inference: bool, device: str) -> ReferenceAugmenter:
    """The literal algorithm, built outside the timings like the fast path's tools."""
    return ReferenceAugmenter(model, tokenizer, kv, k=K, p_t=P_T, n_aug=N_AUG, stopwords=load_stopwords(),
                              inference=inference, device=device)


def literal(reference: ReferenceAugmenter, texts, ids) -> list[list[str]]:
    return [reference.augment(t, example_rng(SEED, i)) for t, i in zip(texts, ids)]


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - began


def run_stage(rows: int, mlm: Path, task: Path, workers: int = 1, shard_rows: int = 4096, batch_size: int = 64,
              glove: str = "embedded:glove-6b-50d", allocator: str = "fixed",
              cpu: dict | None = None) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, sentences) of one augment-stage process over the first ``rows``
    training rows; ``cpu`` receives its CPU seconds (see ``run_measured``)."""
    seconds, peak, manifest = run_measured(
        f"import sys; sys.path.insert(0, 'benchmarks'); import allocators; allocators.use({allocator!r}); "
        "from tinybert.augment import stage; from tinybert.config import AugmentConfig",
        f"stage.run(AugmentConfig(n_aug={N_AUG}, k={K}, max_examples={rows}, workers={workers}, "
        f"shard_rows={shard_rows}, batch_size={batch_size}, glove={glove!r}), task_dir=Path({str(task)!r}), "
        f"mlm_dir=Path({str(mlm)!r}), out_dir=OUT)", cpu)
    return seconds, peak, manifest["source_sentences"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=48)
    parser.add_argument("--mlm", type=Path, default=ROOT / "data/mlm")
    parser.add_argument("--task", type=Path, default=ROOT / "data/task")
    parser.add_argument("--glove", default="embedded:glove-6b-50d",
                        help="GloVe vectors in any form augment.glove takes (first 100k used)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[500, 2000])
    parser.add_argument("--allocators", nargs="+", choices=ALLOCATOR_NAMES, default=["fixed"],
                        help="allocator settings for the memory figures (benchmarks/allocators.py)")
    parser.add_argument("--shard-rows", type=int, default=250)
    parser.add_argument("--worker-rows", type=int, default=500, help="rows for the worker timings (0: skip)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time the stage with")
    parser.add_argument("--profile", type=Path, help="also write torch.profiler tables of the fast path, "
                        "fp32 and bf16, into this folder (augment-profile-fp32.txt, augment-profile-bf16.txt)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where the MLM runs, for the baseline and the fast path alike (auto: cuda if present)")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if not (args.mlm / "config.json").is_file() or not (args.task / "train.parquet").is_file():
        sys.exit(f"error: {args.mlm} or {args.task}/train.parquet missing; run `dvc repro augment` first")

    model, tokenizer = load_mlm(args.mlm)
    kv = load_glove(args.glove, 100_000)
    train = pq.read_table(args.task / "train.parquet").slice(0, args.sentences).to_pydict()
    texts, ids = train["text"], train["id"]
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, torch threads {torch.get_num_threads()}"
    print(f"{len(texts)} sentences, K={K}, N_a={N_AUG}, p_t={P_T}, {where}")

    chunk = examples_per_chunk(args.batch_size)
    new_tools = functools.partial(make_tools, model, tokenizer, kv, args.batch_size, device)
    if device == "cuda":  # CUDA context, kernels and the allocator's blocks, outside every timing
        for precision in ("fp32", "bf16"):
            fast_path(new_tools(precision), texts, ids, chunk)
    baseline, t_base = timed(literal, make_reference(model, tokenizer, kv, False, device), texts, ids)
    inference, t_inf = timed(literal, make_reference(model, tokenizer, kv, True, device), texts, ids)
    fp32_tools = new_tools("fp32")
    spent: dict[str, float] = {}
    fast, t_fast = timed(fast_path, fp32_tools, texts, ids, chunk, spent=spent)
    bf16_tools = new_tools("bf16")
    bf16, t_bf16 = timed(fast_path, bf16_tools, texts, ids, chunk)
    assert baseline == inference == fast, "the fast path and the literal algorithm disagree"
    n = len(texts)
    target = "100x on a GPU" if device == "cuda" else "25x on 2 CPU cores"
    print(f"literal, as the reference runs it   {n / t_base:8.2f} sentences/s")
    print(f"literal, inference mode             {n / t_inf:8.2f} sentences/s   {t_base / t_inf:5.1f}x")
    print(f"fast path                           {n / t_fast:8.2f} sentences/s   {t_base / t_fast:5.1f}x "
          f"(target >= {target}; chunks of {chunk} examples)")
    shares = ", ".join(f"{name} {seconds / t_fast:.0%}" for name, seconds in spent.items())
    print(f"  its time: {shares}, the rest (words, sampling, Python) {1 - sum(spent.values()) / t_fast:.0%}")
    print("same augmented sentences from all three: yes")
    fast_sets, bf16_sets = candidate_lists(fp32_tools, texts), candidate_lists(bf16_tools, texts)
    pairs = [(a, b) for sa, sb in zip(fast_sets, bf16_sets) for a, b in zip(sa, sb) if a is not None]
    same_set = sum(set(a) == set(b) for a, b in pairs) / len(pairs)
    shared = sum(len(set(a) & set(b)) for a, b in pairs) / sum(len(a) for a, _ in pairs)
    same_rows = sum(a == b for a, b in zip(fast, bf16)) / len(fast)
    print(f"fast path, bf16 (augment.precision)  {n / t_bf16:8.2f} sentences/s   {t_base / t_bf16:5.1f}x "
          f"(not exact: {same_set:.1%} of candidate sets equal, {shared:.1%} of candidates shared, "
          f"{same_rows:.1%} of examples give the same sentences)")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        for precision in ("fp32", "bf16"):
            profile(new_tools(precision), texts, ids, chunk, device, args.profile / f"augment-profile-{precision}.txt")
        print(f"profiles written to {args.profile}")

    for rows in sorted(args.memory_sizes):
        for allocator in args.allocators:
            cpu: dict = {}
            seconds, peak, sentences = run_stage(rows, args.mlm, args.task, shard_rows=args.shard_rows,
                                                 batch_size=args.batch_size, glove=args.glove, allocator=allocator, cpu=cpu)
            print(f"augment stage, {sentences:6d} sentences, allocator {allocator}: peak RSS {peak:7.0f} MB "
                  f"({seconds:.0f} s, CPU {cpu['user']:.0f} s user + {cpu['sys']:.0f} s system, shards of {args.shard_rows})")

    rows = args.worker_rows
    if rows <= 0:
        return
    # The whole stage, process start and model loading included, so the figures are what a user
    # sees. On a GPU the workers share it: each runs its host work while the others' batches run.
    first = None
    for workers in args.workers:
        seconds, _, sentences = run_stage(rows, args.mlm, args.task, workers=workers, shard_rows=args.shard_rows,
                                          batch_size=args.batch_size, glove=args.glove)
        first = first or seconds
        print(f"augment stage, {sentences} sentences, {workers} worker(s): {seconds:.0f} s, {sentences / seconds:.1f} "
              f"sentences/s ({sentences / seconds * t_base / n:.1f}x the literal baseline, {first / seconds:.2f}x 1 worker)")

if __name__ == "__main__":
    main()
