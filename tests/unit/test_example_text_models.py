"""The sentence embedder and the text classifier examples, loaded by the python runtime from the
version folders `examples/build_models.py` builds (the `example_models` fixture), on the real
all-MiniLM-L6-v2 weights: what the vectors mean, that batching cannot change them, and that
the head trained at build time labels sentences it never saw, in English and in Korean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rayship.spec import PythonOptions, RuntimeSpec
from rayship_predictors.errors import BadRequest
from rayship_predictors.runtimes.base import Runtime, TensorSpec
from rayship_predictors.runtimes.loader import load_runtime
from support.models import build_models

# (text, a paraphrase of it, an unrelated text)
PARAPHRASES = [
    (
        "The weather is lovely today.",
        "It is sunny and warm today.",
        "Our team won the football match.",
    ),
    ("오늘 날씨가 정말 좋네요.", "오늘은 날씨가 아주 맑아요.", "축구 경기에서 우리 팀이 이겼다."),
]
# Sentences that are not in build_models.TOPIC_SENTENCES, with their topic. The Korean ones
# share everyday words with the training sentences: all the English-trained encoder can match.
HELD_OUT = [
    ("The goalkeeper saved a penalty in the final.", "sports"),
    ("The sprinter won the hundred metres race.", "sports"),
    ("The boxer knocked out his opponent in the third round.", "sports"),
    ("Tomorrow will be rainy and windy.", "weather"),
    ("Expect sunshine and warm temperatures this weekend.", "weather"),
    ("It's freezing outside and snowing heavily.", "weather"),
    ("I cooked rice and chicken for dinner.", "food"),
    ("This strawberry ice cream is very sweet.", "food"),
    ("Mix flour, eggs and sugar to make cookies.", "food"),
    ("축구 대표팀이 월드컵 경기에서 이겼다.", "sports"),
    ("선수들이 경기장에서 훈련을 했다.", "sports"),
    ("오늘 오후에 비가 많이 온다.", "weather"),
    ("주말에는 맑고 따뜻한 날씨가 예상된다.", "weather"),
    ("이 라면은 정말 맵고 맛있다.", "food"),
    ("엄마가 맛있는 된장찌개를 요리했다.", "food"),
]


def texts(*items: str | bytes) -> np.ndarray:
    """A BYTES [-1] input as the codec decodes it: an object array of bytes."""
    return np.array([i.encode() if isinstance(i, str) else i for i in items], dtype=object)


@pytest.fixture(scope="module")
def embedder(example_models: Path) -> Runtime:
    spec = RuntimeSpec("python", python=PythonOptions("embedder:SentenceEmbedder"))
    return load_runtime(spec, example_models / "sentence-embedder" / "1", use_gpu=False)


@pytest.fixture(scope="module")
def classifier(example_models: Path) -> Runtime:
    spec = RuntimeSpec("python", python=PythonOptions("text_classifier:TextClassifier"))
    return load_runtime(spec, example_models / "text-classifier" / "1", use_gpu=False)


def embed(embedder: Runtime, *items: str | bytes, normalize: bool = True) -> np.ndarray:
    # The data plane fills in declared parameters' defaults; the runtime alone does not.
    outputs = embedder.infer({"text": texts(*items)}, {"normalize": normalize})
    return outputs["embedding"]


def test_embedder_declares_its_tensors(embedder: Runtime) -> None:
    assert embedder.inputs == [TensorSpec("text", "BYTES", (-1,))]
    assert embedder.outputs == [TensorSpec("embedding", "FP32", (-1, 384))]


@pytest.mark.parametrize("normalize", [True, False])
def test_one_fp32_vector_of_384_per_text(embedder: Runtime, normalize: bool) -> None:
    vectors = embed(embedder, "hello", "안녕하세요", "", normalize=normalize)

    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms, 1, atol=1e-5) == normalize, norms


def test_no_texts_give_no_vectors(embedder: Runtime) -> None:
    assert embed(embedder).shape == (0, 384)


@pytest.mark.parametrize(("text", "paraphrase", "unrelated"), PARAPHRASES, ids=["en", "ko"])
def test_a_paraphrase_is_nearer_than_an_unrelated_text(
    embedder: Runtime, text: str, paraphrase: str, unrelated: str
) -> None:
    vector, near, far = embed(embedder, text, paraphrase, unrelated)

    assert vector @ near > vector @ far + 0.2, (vector @ near, vector @ far)


def test_batched_vectors_equal_single_ones(embedder: Runtime) -> None:
    """Texts of very different lengths: in a batch the short ones are padded."""
    items = [t for triple in PARAPHRASES for t in triple] + ["word", "a much longer text " * 40]

    batched = embed(embedder, *items)

    single = np.concatenate([embed(embedder, item) for item in items])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_text_that_is_not_utf8_is_a_bad_request_naming_it(embedder: Runtime) -> None:
    with pytest.raises(BadRequest, match=r"^text\[1\] is not valid UTF-8$"):
        embed(embedder, "fine", b"\xff\xfe latin-1 \xe9")


def test_classifier_labels_held_out_sentences(classifier: Runtime) -> None:
    assert not {text for text, _ in HELD_OUT} & {
        text for group in build_models.TOPIC_SENTENCES.values() for text in group
    }

    result = classifier.infer({"text": texts(*(text for text, _ in HELD_OUT))}, {})

    assert [label.decode() for label in result["label"]] == [label for _, label in HELD_OUT]
    assert result["score"].dtype == np.float32
    assert ((result["score"] > 1 / 3) & (result["score"] <= 1)).all(), result["score"]
