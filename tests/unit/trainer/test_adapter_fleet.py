"""The adapter controller against fake replicas: load, confirm, refuse by rank, unload."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from trainer.adapter_fleet import AdapterFleet, ReplicaError, ReplicaModels, adapter_rank


class FakeReplica:
    """Keeps a set of names; can refuse loads, fail to list, or forget what it loaded."""

    def __init__(
        self,
        url: str,
        *,
        refuse: bool = False,
        down: bool = False,
        forgets: bool = False,
        max_lora_rank: int | None = None,
    ) -> None:
        self.url = url
        self.names = {"loraloop"}
        self.refuse, self.down, self.forgets = refuse, down, forgets
        self.max_lora_rank = max_lora_rank
        self.calls: list[tuple[str, str]] = []

    def models(self) -> ReplicaModels:
        if self.down:
            msg = "GET /v1/models: ConnectError: connection refused"
            raise ReplicaError(msg)
        return ReplicaModels(frozenset(self.names), self.max_lora_rank)

    def load(self, name: str, path: Path) -> None:
        self.calls.append(("load", name))
        if self.refuse:
            msg = "POST /v1/load_lora_adapter: 400 runtime LoRA updating is off"
            raise ReplicaError(msg)
        assert (path / "adapter_config.json").is_file()
        if not self.forgets:
            self.names.add(name)

    def unload(self, name: str) -> None:
        self.calls.append(("unload", name))
        self.names.discard(name)


@pytest.fixture
def adapters(tmp_path: Path) -> Path:
    for name, rank in (("model_v1", 8), ("model_v2", 8), ("model_v3", 64)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_bytes(orjson.dumps({"r": rank}))
    return tmp_path


def _fleet(adapters: Path, *replicas: FakeReplica) -> AdapterFleet:
    return AdapterFleet(replicas, lambda version: adapters / version)


def test_every_replica_loads_what_it_lacks_and_must_list_it(adapters: Path) -> None:
    a, b = FakeReplica("http://a"), FakeReplica("http://b")
    b.names.add("model_v1")
    fleet = _fleet(adapters, a, b)
    assert fleet.prepare({"model_v2", "model_v1", "base"}) == []
    assert a.calls == [("load", "model_v1"), ("load", "model_v2")]
    assert b.calls == [("load", "model_v2")]  # it listed model_v1 already
    assert fleet.prepare({"model_v1", "model_v2"}) == []  # nothing to do the second time
    assert len(a.calls) == 2
    assert fleet.problems == ()


def test_refused_unreachable_and_unlisted_replicas_are_problems_with_reasons(
    adapters: Path,
) -> None:
    fleet = _fleet(
        adapters,
        FakeReplica("http://ok"),
        FakeReplica("http://refuses", refuse=True),
        FakeReplica("http://down", down=True),
        FakeReplica("http://forgets", forgets=True),
    )
    problems = fleet.prepare({"model_v2"})
    assert [p.describe() for p in problems] == [
        "model_v2 on http://refuses: refused to load it "
        "(POST /v1/load_lora_adapter: 400 runtime LoRA updating is off)",
        "http://down: unreachable (GET /v1/models: ConnectError: connection refused)",
        "model_v2 on http://forgets: loaded, but /v1/models does not list it",
    ]
    assert fleet.problems == tuple(problems)


def test_a_rank_above_the_replica_limit_is_refused_without_asking_it(adapters: Path) -> None:
    small = FakeReplica("http://small", max_lora_rank=16)
    problems = _fleet(adapters, small).prepare({"model_v3", "model_v2"})
    assert [p.describe() for p in problems] == [
        "model_v3 on http://small: LoRA rank 64 is above the replica's max_lora_rank 16"
    ]
    assert small.calls == [("load", "model_v2")]


def test_retire_unloads_only_managed_versions_outside_keep(adapters: Path) -> None:
    replica = FakeReplica("http://a")
    replica.names |= {"model_v1", "model_v2", "hand-loaded"}
    fleet = _fleet(adapters, replica)
    assert fleet.retire(keep={"model_v2"}, managed={"model_v1", "model_v2", "model_v3"}) == []
    assert replica.calls == [("unload", "model_v1")]
    assert replica.names == {"loraloop", "model_v2", "hand-loaded"}


def test_adapter_rank_reads_the_peft_config_and_tolerates_its_absence(adapters: Path) -> None:
    assert adapter_rank(adapters / "model_v3") == 64
    assert adapter_rank(adapters / "missing") is None
