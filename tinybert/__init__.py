"""tinybert: TinyBERT distillation (Jiao et al., 2019) as a reproducible pipeline."""

import os

# Models and data are local folders and files: never reach for a hub at run time (set these
# to 0 yourself to allow it). Set before transformers/datasets read them at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# A fixed number of CPU threads per operation. Under CPU load, a rerun's trained weights could
# differ in their last bits; with OpenMP's and MKL's dynamic adjustment off this was rarer in a
# load test, though not gone. They must be set before torch loads its threading libraries.
os.environ.setdefault("OMP_DYNAMIC", "FALSE")
os.environ.setdefault("MKL_DYNAMIC", "FALSE")

__version__ = "0.1.0"
