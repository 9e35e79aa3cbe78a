"""Where model requests go: path rules, and the traffic split, primary, 404 and 503 rules."""

from __future__ import annotations

from collections import Counter

import pytest

from rayship.contract import ModelTable, below_model, split_version
from rayship_predictors.errors import NotFound, NotReady
from rayship_predictors.traffic import TrafficTable


def table(traffic: list[list[object]]) -> TrafficTable:
    config = {"versions": {"1": "iris@1", "2": "iris@2"}, "traffic": traffic}
    return TrafficTable.of("iris", ModelTable.from_dict(config))


def test_the_split_follows_the_shares() -> None:
    split = table([["1", 80], ["2", 20]])
    drawn = Counter(split.pick() for _ in range(4000))
    assert set(drawn) == {"1", "2"}
    assert 0.75 < drawn["1"] / 4000 < 0.85


def test_versions_without_a_share_are_never_picked() -> None:
    split = table([["1", 100], ["2", 0]])
    assert {split.pick() for _ in range(200)} == {"1"}


def test_the_largest_share_is_primary() -> None:
    assert table([["1", 30], ["2", 70]]).primary() == "2"


def test_live_versions_map_to_their_applications() -> None:
    assert table([["1", 100]]).app_of("2") == "iris@2"


def test_a_version_that_is_not_live_is_404_naming_it() -> None:
    with pytest.raises(NotFound, match=r"no live version '7'"):
        table([["1", 100]]).app_of("7")


def test_no_traffic_yet_is_503_naming_the_model() -> None:
    empty = table([])
    with pytest.raises(NotReady, match=r"'iris' is not ready yet"):
        empty.pick()
    with pytest.raises(NotReady):
        empty.primary()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/iris/infer", "/infer"),  # a version with no route prefix sees it all
        ("/v2/models/iris", ""),
        ("/infer", "/infer"),  # routed at the model URL, Serve strips the prefix
        ("/v2/models/iris2/infer", "/v2/models/iris2/infer"),  # another model's name
    ],
)
def test_paths_are_read_below_the_model_url(path: str, expected: str) -> None:
    assert below_model("iris", path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/versions/2/infer", ("2", "/infer")),
        ("/versions/2", ("2", "")),
        ("/infer", (None, "/infer")),
        ("", (None, "")),
    ],
)
def test_a_version_is_split_off_the_path(path: str, expected: tuple[str | None, str]) -> None:
    assert split_version(path) == expected
