"""Masked-language-model candidates for words that are a single word piece.

Rule (method.md, "Reference details"): "single piece" means the word became exactly one word
piece in the word-piece tokenisation of the whole sentence. The MLM input is the sentence's
pieces with that piece replaced by ``[MASK]``, then ``[SEP]``, the original sentence's pieces,
``[SEP]``; segment ids are 0 for ``[CLS]`` and the first copy (its ``[SEP]`` included), 1 for the
rest; the input is truncated at 512. The candidates are the K highest-scoring vocabulary entries
at the masked position, minus those starting with ``##`` (so a set can be smaller than K).

Unlike the reference (one forward per word, batch 1, gradients on), inputs for many
(sentence, position) pairs are batched together, under inference mode, with the LM head
evaluated only at the masked positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tinybert.runtime import warn_if_bf16_is_emulated

MAX_LENGTH = 512


@dataclass(frozen=True)
class SentencePieces:
    """Word-piece ids of a sentence and, for each basic word, the positions of its pieces."""

    ids: list[int]
    word_pieces: list[list[int]]


def sentence_pieces(tokenizer, sentences: list[list[str]]) -> list[SentencePieces]:
    """Word-piece tokenise sentences given as basic words and map pieces back to words.

    The basic words are tokenised with ``is_split_into_words=True``: the words are already
    normalised and pre-tokenised, and normalisation and the whitespace/punctuation split are
    idempotent, so the pieces equal those of the whole sentence (checked in the tests), while
    ``word_ids`` index exactly the list of words that Algorithm 1 replaces. This is the
    reference's rule (a piece not starting with ``##`` opens the next word) without its
    string heuristics.
    """
    if not sentences:
        return []
    encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False, truncation=False)
    out = []
    for i, words in enumerate(sentences):
        word_pieces: list[list[int]] = [[] for _ in words]
        for position, word in enumerate(encoded.word_ids(i)):
            if word is not None:
                word_pieces[word].append(position)
        out.append(SentencePieces(list(encoded["input_ids"][i]), word_pieces))
    return out


def build_mlm_input(
    piece_ids: list[int], mask_at: int, *, cls_id: int, sep_id: int, mask_id: int, max_length: int = MAX_LENGTH
) -> tuple[list[int], list[int]]:
    """``[CLS] pieces-with-[MASK] [SEP] pieces [SEP]`` and its segment ids, truncated at ``max_length``."""
    masked = list(piece_ids)
    masked[mask_at] = mask_id
    input_ids = [cls_id] + masked + [sep_id] + list(piece_ids) + [sep_id]
    token_types = [0] * (len(piece_ids) + 2) + [1] * (len(piece_ids) + 1)
    return input_ids[:max_length], token_types[:max_length]


class PairInputs:
    """``build_mlm_input`` for many (sentence, masked piece) pairs at once, as padded arrays.

    Each sentence's unmasked input is laid out once; a batch is a gather of its sentences' rows
    and one write of ``[MASK]`` per row. Building a list per (sentence, piece) and converting
    nested lists to tensors cost about as much host time as a GPU's forward pass.
    """

    def __init__(self, sentences: list[list[int]], *, cls_id: int, sep_id: int, mask_id: int, pad_id: int,
                 max_length: int = MAX_LENGTH):
        self.mask_id = mask_id
        self.lengths = np.array([min(2 * len(ids) + 3, max_length) for ids in sentences], dtype=np.int64)
        width = int(self.lengths.max()) if sentences else 0
        self.input_ids = np.full((len(sentences), width), pad_id, dtype=np.int64)
        self.token_type_ids = np.zeros((len(sentences), width), dtype=np.int64)
        for s, ids in enumerate(sentences):
            length = self.lengths[s]
            self.input_ids[s, :length] = np.concatenate(([cls_id], ids, [sep_id], ids, [sep_id]))[:length]
            self.token_type_ids[s, len(ids) + 2 : length] = 1

    def batch(self, sentences: np.ndarray, pieces: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Model inputs for masking piece ``pieces[i]`` of sentence ``sentences[i]``, padded to the
        longest, and each row's masked position."""
        width = int(self.lengths[sentences].max())
        input_ids = self.input_ids[sentences, :width]  # a gather: a copy, the templates stay intact
        positions = pieces + 1  # after [CLS]
        input_ids[np.arange(len(sentences)), positions] = self.mask_id
        attention_mask = (np.arange(width) < self.lengths[sentences][:, None]).astype(np.int64)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
                  "token_type_ids": self.token_type_ids[sentences, :width]}
        return {key: torch.from_numpy(value) for key, value in inputs.items()}, torch.from_numpy(positions)


@dataclass(frozen=True)
class _TopK:
    """A batch's top-k vocabulary ids (on the host) and, on a GPU, the event after which they are there."""

    ids: torch.Tensor
    done: torch.cuda.Event | None


@dataclass
class PendingCandidates:
    """A launched :meth:`MlmCandidates.launch` request: the batches' top-k (on a GPU, possibly
    still being computed) and what each batch row asked for."""

    result: list[dict[int, list[str]]]
    asked_sentence: list[int]
    asked_word: list[int]
    batches: list[tuple[np.ndarray, _TopK]]


class MlmCandidates:
    """Top-k MLM predictions for single-piece words, batched across sentences."""

    def __init__(self, model, tokenizer, k: int, batch_size: int, device: str | torch.device = "cpu",
                 max_length: int = MAX_LENGTH, batch_tokens: int | None = None, precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.model = model.to(device).eval()
        warn_if_bf16_is_emulated(torch.device(device).type, precision)
        # bf16 autocast runs the encoder's matrix products 2-3x faster where the hardware has bf16
        # units (AMX, tensor cores), but near-tied scores can swap places, so the candidate lists
        # (and the sampled sentences) are no longer exactly Algorithm 1's; fp32 is exact.
        self.precision = precision
        self.tokenizer = tokenizer
        self.k = k
        self.batch_size = batch_size
        # Activation memory grows with rows x length (attention with rows x length^2): a cap on
        # padded tokens keeps a batch of 512-token pair inputs as small as one of short sentences.
        self.batch_tokens = batch_tokens
        self.device = torch.device(device)
        self.max_length = max_length
        self.special = dict(cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, mask_id=tokenizer.mask_token_id)
        if None in self.special.values():
            raise ValueError("the MLM tokenizer needs [CLS], [SEP] and [MASK] tokens")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Model vocabularies may be padded past the tokenizer's; such rows have no token to offer.
        self.vocab_size = min(len(tokenizer), model.get_output_embeddings().weight.shape[0])
        # The token a prediction writes into a sentence, or None: ids with no token (holes in a
        # vocabulary) and '##' continuation pieces are never candidates.
        self.candidate_token = [token if token and not token.startswith("##") else None
                                for token in tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))]
        self.uses_segments = getattr(model.config, "type_vocab_size", 0) > 1
        # A BERT under SDPA attention takes a prepared 4-D boolean mask as it is (see _launch).
        config = model.config
        self._prepared_mask = (hasattr(model, "bert") and getattr(config, "model_type", None) == "bert"
                               and not getattr(config, "is_decoder", False)
                               and getattr(config, "_attn_implementation", None) == "sdpa")

    def candidates(self, sentences: list[list[str]], targets: list[list[int]]) -> list[dict[int, list[str]]]:
        """For each sentence, ``{word index: candidates}`` for the target words that are single pieces.

        Target words that are not exactly one piece are left out (the caller uses GloVe for
        them). A single piece pushed past ``max_length`` by the doubled input gets ``[]``.
        """
        return self.collect(self.launch(sentences, targets))

    def launch(self, sentences: list[list[str]], targets: list[list[int]]) -> PendingCandidates:
        """Start :meth:`candidates`: on a GPU every batch is queued and none is waited for, so the
        caller can do other host work (sample the chunk before) while the GPU computes these.
        On a CPU the batches are computed here. :meth:`collect` returns the result."""
        layouts = sentence_pieces(self.tokenizer, sentences)
        result: list[dict[int, list[str]]] = [{} for _ in sentences]
        asked_sentence, asked_word, asked_piece = [], [], []
        for s, (layout, wanted) in enumerate(zip(layouts, targets)):
            for w in wanted:
                pieces = layout.word_pieces[w]
                if len(pieces) != 1:
                    continue
                if 1 + pieces[0] >= self.max_length:
                    result[s][w] = []
                    continue
                asked_sentence.append(s)
                asked_word.append(w)
                asked_piece.append(pieces[0])
        pending = PendingCandidates(result, asked_sentence, asked_word, [])
        if not asked_sentence:
            return pending
        pairs = PairInputs([layout.ids for layout in layouts], max_length=self.max_length, pad_id=self.pad_id,
                           **self.special)
        sentence_of, piece_of = np.array(asked_sentence), np.array(asked_piece)
        # Longest first: batches of similar length waste little padding; the order of
        # requests does not change any one request's result.
        order = np.argsort(-pairs.lengths[sentence_of], kind="stable")
        for start, stop in self._batches(pairs.lengths[sentence_of[order]]):
            rows = order[start:stop]
            pending.batches.append((rows, self._launch(*pairs.batch(sentence_of[rows], piece_of[rows]))))
        return pending

    def collect(self, pending: PendingCandidates) -> list[dict[int, list[str]]]:
        """Wait for a launched request's batches and return :meth:`candidates`' result."""
        result = pending.result
        for rows, top in pending.batches:
            for r, found in zip(rows.tolist(), self._tokens(top)):
                result[pending.asked_sentence[r]][pending.asked_word[r]] = found
        pending.batches.clear()
        return result

    def _batches(self, lengths: np.ndarray) -> list[tuple[int, int]]:
        """(start, stop) of consecutive runs of the inputs, sorted longest first: at most
        ``batch_size`` rows and, with ``batch_tokens``, at most that many padded tokens (a single
        longer input goes alone)."""
        bounds: list[tuple[int, int]] = []
        start = 0
        values = lengths.tolist()
        for i in range(len(values)):
            # Sorted longest first, so a batch's first input sets its padded length.
            rows = i - start + 1
            if i > start and (rows > self.batch_size or (
                    self.batch_tokens is not None and rows * values[start] > self.batch_tokens)):
                bounds.append((start, i))
                start = i
        bounds.append((start, len(lengths)))
        return bounds

    def _launch(self, inputs: dict[str, torch.Tensor], masked_positions: torch.Tensor) -> "_TopK":
        """Start one batch: on a GPU every step is queued without waiting for it."""
        if not self.uses_segments:
            inputs = {key: value for key, value in inputs.items() if key != "token_type_ids"}
        padded = not bool(inputs["attention_mask"].all())  # host arrays: no wait
        on_gpu = self.device.type == "cuda"
        # From pinned memory a copy to the GPU is queued; from pageable memory it waits for the
        # GPU to finish the batch before.
        to_device = lambda value: (value.pin_memory() if on_gpu else value).to(self.device, non_blocking=True)  # noqa: E731
        mask = inputs.pop("attention_mask")
        inputs = {key: to_device(value) for key, value in inputs.items()}
        if not self._prepared_mask:
            inputs["attention_mask"] = to_device(mask)
        elif padded:
            # transformers checks a 2-D mask for padding with a GPU read (a wait for the batch
            # before). This is the 4-D mask it would build from a padded one, same values and
            # layout; without padding it uses no mask, as when none is given.
            keep = to_device(mask).bool()
            inputs["attention_mask"] = keep[:, None, None, :].expand(len(keep), 1, keep.shape[1], keep.shape[1])
        rows = torch.arange(len(masked_positions), device=self.device)
        positions = to_device(masked_positions)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            logits = self._masked_logits(inputs, (rows, positions))
            top = torch.topk(logits[:, : self.vocab_size].float(), min(self.k, self.vocab_size), dim=1).indices
        if not on_gpu:
            return _TopK(top, None)
        host = torch.empty(top.shape, dtype=top.dtype, pin_memory=True)
        host.copy_(top, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))  # the stream the copy was queued on
        return _TopK(host, done)

    def _tokens(self, top: "_TopK") -> list[list[str]]:
        """The candidate tokens of a launched batch, once it is done."""
        if top.done is not None:
            top.done.synchronize()
        usable = self.candidate_token
        return [[usable[i] for i in ids if usable[i] is not None] for ids in top.ids.tolist()]

    def _masked_logits(self, inputs: dict, masked: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Logits at each row's masked position; ``masked`` is (row indices, positions)."""
        model = self.model
        if hasattr(model, "bert") and hasattr(model, "cls"):
            # BertForMaskedLM: the head only at the masked rows (same values, about half the cost).
            return model.cls(model.bert(**inputs).last_hidden_state[masked])
        return model(**inputs).logits[masked]
