"""The rollout promise, through the operator: moving traffic between warm versions restarts no
replica, fails no request, and keeps the ModelDeployment `Ready`.

README ("The operator") promises that a rollback to a version kept warm, a roll forward to a
warm version and a canary turned on or off only change routes and the traffic table, and that
`Ready` stays True while some version serves the model's URL. One ModelDeployment goes through
each of those moves under steady load from V2 clients on its unversioned URL, while a watcher
samples its Ready condition five times a second. After each move the test waits until the
clients' answers show the traffic moved (the only evidence a user has), then checks that the
replica ids of every version application are the ones recorded before (a restarted replica
gets a new id), that no request failed, and that no sample since the first Ready was not Ready.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.conftest import Stack
from support.traffic import StatusWatcher, SteadyLoad, condition, settled

pytestmark = [pytest.mark.e2e, pytest.mark.kube, pytest.mark.ray]

MODEL = "promise"
# A new version loads from S3 before traffic moves to it; on a loaded 2-core machine that is
# tens of seconds, not minutes.
COLD_TIMEOUT_S = 90
# A warm move is promised instant. The margin only keeps a broken build from hanging: a move
# that restarts replicas takes tens of seconds (bench/operator_bench.py).
WARM_TIMEOUT_S = 60


@dataclass
class Promise:
    """One ModelDeployment under load and watch, and the replicas that must never restart."""

    stack: Stack
    load: SteadyLoad
    watcher: StatusWatcher
    replicas: dict[str, frozenset[str]]

    def move(
        self,
        spec: dict[str, Any],
        versions: set[str],
        timeout_s: float = WARM_TIMEOUT_S,
        **status: Any,
    ) -> None:
        """Move traffic (`Stack.move_traffic`), then check the promise."""
        self.stack.move_traffic(MODEL, self.load, spec, versions, timeout_s, **status)
        self.check(f"after {spec}")

    def check(self, step: str) -> None:
        """No recorded replica restarted, no request failed, Ready never dropped."""
        now = self.stack.serve.replica_ids(MODEL)
        restarted = {
            app: {"before": sorted(ids), "now": sorted(now.get(app, ()))}
            for app, ids in self.replicas.items()
            if now.get(app) != ids
        }
        failures = self.load.failures()
        dips = self.watcher.not_ready_after_ready()
        if restarted or failures or dips:
            pytest.fail(
                f"{step}: the promise is broken.\n"
                f"replicas restarted: {restarted}\n"
                f"failed requests: {len(failures)} of {len(self.load.answers)}, first: "
                f"{[a.error for a in failures[:3]]}\n"
                f"samples not Ready since the first Ready: {len(dips)} of "
                f"{len(self.watcher.samples)} ({self.watcher.missed} reads unanswered), "
                f"first: {dips[:3]}\n"
                f"operator log:\n{self.stack.operator.tail(20)}"
            )


def test_moving_traffic_between_warm_versions_restarts_nothing(stack: Stack) -> None:
    uri = f"s3://{stack.s3.new_bucket()}/{MODEL}"
    stack.upload_iris(uri, ("1", "2"))
    with stack.watch_status(MODEL) as watcher:
        stack.apply(stack.model_deployment(MODEL, uri, "1"))
        stack.wait_for(MODEL, settled(1, activeVersion="1"), COLD_TIMEOUT_S)
        with SteadyLoad(stack.serve.address, MODEL) as load:
            load.wait_moved(0.0, {"1"}, WARM_TIMEOUT_S)
            promise = Promise(stack, load, watcher, stack.serve.replica_ids(MODEL))
            assert list(promise.replicas) == [f"{MODEL}@1"]

            # A new version starts beside the serving one: version 1's replicas live on.
            promise.move({"model": {"version": "2"}}, {"2"}, COLD_TIMEOUT_S, activeVersion="2")
            promise.replicas = stack.serve.replica_ids(MODEL)
            assert set(promise.replicas) == {f"{MODEL}@1", f"{MODEL}@2"}
            assert all(promise.replicas.values())

            promise.move({"model": {"version": "1"}}, {"1"}, activeVersion="1")
            promise.move({"model": {"version": "2"}}, {"2"}, activeVersion="2")
            canary = {"version": "1", "percent": 50}
            promise.move(
                {"rollout": {"canary": canary}}, {"1", "2"}, activeVersion="2", canaryVersion="1"
            )
            promise.move(
                {"rollout": {"canary": None}}, {"2"}, activeVersion="2", canaryVersion=None
            )

            # The CLI refuses a version missing from S3 and leaves the spec alone ...
            generation = int(stack.get(MODEL)["metadata"]["generation"])
            code, printed = stack.rayship("rollback", "-n", stack.namespace, MODEL, "--to", "99")
            assert code != 0, printed
            assert "99" in printed
            assert stack.get(MODEL)["metadata"]["generation"] == generation
            # ... but a GitOps commit can still ask for it: the operator keeps version 2 serving,
            # says why in Degraded, and restarts nothing.
            since = time.monotonic()
            stack.patch(MODEL, {"model": {"version": "99"}})
            stack.wait_for(
                MODEL,
                lambda s: (
                    s.get("observedGeneration") == generation + 1
                    and condition(s, "Degraded").get("status") == "True"
                ),
                WARM_TIMEOUT_S,
            )
            load.wait_moved(since, {"2"}, WARM_TIMEOUT_S)
            promise.check("after spec.model.version 99, missing from S3")
