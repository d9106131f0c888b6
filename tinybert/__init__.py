"""tinybert: TinyBERT distillation (Jiao et al., 2019) as a reproducible pipeline."""

import os

# Models and data are local folders and files: never reach for a hub at run time (set these
# to 0 yourself to allow it). Set before transformers/datasets read them at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# A fixed number of CPU threads per operation: with OpenMP's and MKL's dynamic adjustment on,
# the thread count (and so the last bits of a parallel sum) followed the machine's load, and a
# busy machine trained a general student that differed from a quiet one's in the 7th digit.
# They must be set before torch loads its threading libraries.
os.environ.setdefault("OMP_DYNAMIC", "FALSE")
os.environ.setdefault("MKL_DYNAMIC", "FALSE")

__version__ = "0.1.0"
