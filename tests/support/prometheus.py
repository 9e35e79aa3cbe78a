"""Reading a Prometheus endpoint the way Prometheus does: the text format, parsed by the
Prometheus client's own parser."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

SHOWN = {"model", "version", "code", "reason", "replica"}
"""The labels a failure shows: Ray's own (node, session, worker) would drown them."""


def scrape(url: str) -> list[Sample]:
    """Every sample the endpoint serves now."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name` over every series carrying `labels` (whatever else it carries: Ray
    adds replica, node and session labels)."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def scrape_until(
    url: str, settled: Callable[[list[Sample]], bool], timeout_s: float = 60
) -> list[Sample]:
    """Scrape until `settled` holds (Ray's replicas report on an interval), or fail with the
    last scrape's rayship series."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(url)
        if settled(samples):
            return samples
        if time.monotonic() > deadline:
            ours = "\n".join(
                f"{s.name}{ {k: v for k, v in s.labels.items() if k in SHOWN} } {s.value}"
                for s in samples
                if "rayship" in s.name and not s.name.endswith("_bucket")
            )
            raise AssertionError(f"metrics at {url} did not settle in {timeout_s}s:\n{ours}")
        time.sleep(0.5)
