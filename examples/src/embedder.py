"""Sentence embeddings with all-MiniLM-L6-v2: the python runtime on a real transformer.

`build_models.py` copies this file into the version folder beside `model/`, the tokenizer,
config and weights as a team would upload them (predictorClass "embedder:SentenceEmbedder").
`SentenceEncoder` computes what sentence-transformers does for this model (tokenize, BERT,
mean pooling over the attention mask, L2 normalisation); the text classifier and the build
reuse it, so the vectors the head is trained on are the ones served.

The model is English-trained: Korean and other scripts outside its uncased BERT vocabulary are
split into single characters or jamo, so their vectors mostly reflect shared words.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as transformers_logging

from rayship_predictors.sdk import BadRequest, Parameter, Predictor, Tensor

DIMENSIONS = 384  # all-MiniLM-L6-v2's hidden size


class SentenceEncoder:
    """Texts -> FP32 [n, hidden] sentence vectors, from a sentence-transformers model folder.

    Safe to call from several threads at once: the forward pass keeps no state, and the
    tokenizer call, which does, is serialised.
    """

    def __init__(self, folder: Path) -> None:
        # A progress bar per load clutters the replica's log.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        # local_files_only: a folder path never needs the hub; this makes sure nothing asks it.
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        self.dimensions: int = self.model.config.hidden_size
        # sentence-transformers truncates at the model's max_seq_length (256), not at the
        # tokenizer's 512: the same limit keeps long texts' vectors equal to the library's.
        config = json.loads((folder / "sentence_bert_config.json").read_text())
        self.max_length: int = config["max_seq_length"]
        # A fast tokenizer sets its padding and truncation on a shared Rust object on every
        # call; two threads calling it at once fail with "RuntimeError: Already borrowed".
        self._tokenizer_lock = threading.Lock()

    def embed(self, texts: Sequence[str], normalize: bool = True) -> np.ndarray:
        """Mean of the last hidden states over each text's real tokens, unit length if
        `normalize` (then a dot product is the cosine similarity)."""
        if not texts:
            return np.zeros((0, self.dimensions), np.float32)
        with self._tokenizer_lock:
            batch = self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=1)
        vectors: np.ndarray = pooled.numpy()
        return vectors


def load_encoder(version_folder: Path) -> SentenceEncoder:
    """The encoder of a version folder's `model/`, set up for serving.

    One torch (intra-op) thread: the replica already runs up to RAYSHIP_PREDICT_THREADS (4)
    predict calls at once in its thread pool, and each would otherwise start an OpenMP team
    as large as the machine. Measured on 2 cores: two single-threaded calls side by side were
    as fast as two-threaded ones, and one text takes 10 ms while 16 take 67 ms, so batching and
    the pool give the throughput, not threads inside one call; oversubscribed spinning threads
    only slow a shared machine down. Set process-wide: the replica serves this model alone.
    """
    torch.set_num_threads(1)
    encoder = SentenceEncoder(version_folder / "model")
    if encoder.dimensions != DIMENSIONS:
        raise ValueError(
            f"{version_folder / 'model'} gives {encoder.dimensions}-dimensional vectors; "
            f"this predictor declares {DIMENSIONS}"
        )
    return encoder


def decode_texts(texts: np.ndarray) -> list[str]:
    """The UTF-8 strings of a BYTES [-1] input; an element that is not UTF-8 is a 400."""
    decoded: list[str] = []
    for index, text in enumerate(texts.tolist()):
        try:
            decoded.append(text.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(f"text[{index}] is not valid UTF-8") from None
    return decoded


class SentenceEmbedder(Predictor):
    """One 384-dimensional vector per text, for semantic search and clustering.

    The output is declared [-1, 384], not [-1, -1]: the width is fixed by the model, and
    clients (and Triton's `/config`) can size their buffers and vector indexes from metadata.
    `load_encoder` refuses a `model/` whose width differs.
    """

    inputs = (Tensor("text", "BYTES", (-1,)),)
    outputs = (Tensor("embedding", "FP32", (-1, DIMENSIONS)),)
    parameters = (Parameter("normalize", bool, True),)

    def load(self, path: Path) -> None:
        self.encoder = load_encoder(path)

    def predict(
        self, inputs: dict[str, np.ndarray], parameters: dict[str, object]
    ) -> dict[str, np.ndarray]:
        texts = decode_texts(inputs["text"])
        return {"embedding": self.encoder.embed(texts, normalize=bool(parameters["normalize"]))}
