"""Run one pipeline stage in a fresh interpreter and measure it, for the memory benchmarks."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_measured(setup: str, call: str) -> tuple[float, float, dict]:
    """(seconds, peak RSS in MB, manifest) of ``call`` run in a fresh Python process.

    ``setup`` holds the imports; ``call`` is a stage's ``run(...)`` whose ``out_dir`` is written
    ``OUT``. Checkpoints and output go to a temporary folder. Peak RSS is that of the largest
    process: the stage's own, or one of its worker processes."""
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            f"import os, resource; from pathlib import Path; os.environ['TINYBERT_CHECKPOINTS'] = {tmp!r}; "
            f"{setup}; OUT = Path({tmp!r}) / 'out'; {call}; "
            "print(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))"
        )
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        seconds = time.perf_counter() - began
        manifest = json.loads((Path(tmp) / "out" / "manifest.json").read_text())
    return seconds, int(done.stdout.split()[-1]) / 1024, manifest
