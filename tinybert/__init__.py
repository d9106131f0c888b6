"""tinybert: TinyBERT distillation (Jiao et al., 2019) as a reproducible pipeline."""

import os

# Models and data are local folders and files: never reach for a hub at run time (set these
# to 0 yourself to allow it). Set before transformers/datasets read them at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

__version__ = "0.1.0"
