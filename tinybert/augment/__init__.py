"""Data augmentation: Algorithm 1 of TinyBERT (word replacement from a masked LM and GloVe), sharded."""
