"""The stage on the real default assets: the MiniLM encoder (LM head untrained, so candidates are
arbitrary words) and the embedded 50-d GloVe. Checks wiring and throughput, not quality."""
import time

import pytest

from tinybert.augment import stage
from tinybert.config import AugmentConfig
from tinybert.io import read_sharded

from .conftest import MINILM
from .test_stage import write_task

pytestmark = pytest.mark.slow

SENTENCES = [
    "A gorgeous, witty, seductive movie.",
    "The acting is uneven and the plot makes no sense whatsoever.",
    "An utterly charming and hilarious film that reminded me why I love cinema.",
    "Bland, predictable and far too long.",
] * 4


def test_stage_runs_on_real_assets(tmp_path):
    from transformers import AutoTokenizer, BertForMaskedLM

    mlm_dir = tmp_path / "mlm"
    BertForMaskedLM.from_pretrained(MINILM).save_pretrained(mlm_dir)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(mlm_dir)
    rows = [(s, None, float(i % 2), i) for i, s in enumerate(SENTENCES)]
    task = write_task(tmp_path / "task", rows)
    start = time.perf_counter()
    stage.run(AugmentConfig(n_aug=10, max_examples=12), task_dir=task, mlm_dir=mlm_dir,
              out_dir=tmp_path / "out")
    elapsed = time.perf_counter() - start
    table = read_sharded(tmp_path / "out")
    assert table.column("is_original").to_pylist().count(True) == len(SENTENCES)  # all kept, 12 augmented
    assert table.num_rows > 12 * 5
    print(f"augmented 12 sentences in {elapsed:.1f} s (model and GloVe loading included)")
