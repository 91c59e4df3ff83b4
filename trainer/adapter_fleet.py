"""The adapter lifecycle controller: every serving replica holds what the router routes to.

vLLM serves LoRA adapters it loads at runtime (``POST /v1/load_lora_adapter`` with
``{"lora_name", "lora_path"}``, ``POST /v1/unload_lora_adapter``; the server must run
with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) and lists them in ``GET /v1/models``, but
one server at a time: nothing fans a new adapter out to the replicas behind a load
balancer, and a user routed to a version a replica lacks gets an error. loraloop's
``local`` gateway backend answers the same three endpoints.

:class:`AdapterFleet` is what the rollout service (:mod:`trainer.rollout_service`) calls:

- :meth:`AdapterFleet.prepare` before a version's rollout starts, and on every later
  step: each replica loads each version it does not list, then must list it (the
  confirmation that it can serve it) before any user is routed there. A replica that
  reports ``max_lora_rank`` in its model list is never asked to load a higher rank. The
  problems (unreachable, refused, not listed after loading) come back with their reason:
  the service holds the rollout on them;
- :meth:`AdapterFleet.retire` once routing no longer needs a version (the rollout
  completed or rolled back): each replica unloads the registry's versions outside
  ``keep``. The parent stays loaded until then.

Blocking (``httpx.Client``), like the rollout service that runs it on the warehouse thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import httpx
import orjson

from loraloop.exceptions import LoraloopError
from trainer.router import BASE_VERSION

logger = logging.getLogger(__name__)

_REASON_CHARS: Final = 300


def adapter_rank(path: Path) -> int | None:
    """The LoRA rank ``r`` in ``path/adapter_config.json`` (None when it is not there)."""
    try:
        config = orjson.loads((path / "adapter_config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    rank = config.get("r") if isinstance(config, dict) else None
    return rank if isinstance(rank, int) else None


class ReplicaError(LoraloopError):
    """A replica did not do what it was asked (the message says what it answered)."""


@dataclass(frozen=True, slots=True)
class ReplicaModels:
    """What a replica lists: its model and adapter names, and its LoRA rank limit if told."""

    names: frozenset[str]
    max_lora_rank: int | None = None


class Replica(Protocol):
    """One OpenAI-compatible server that loads adapters at runtime."""

    url: str

    def models(self) -> ReplicaModels: ...

    def load(self, name: str, path: Path) -> None: ...

    def unload(self, name: str) -> None: ...


class HttpReplica:
    """A vLLM (or loraloop gateway) replica at ``url`` (its base, without ``/v1``)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=timeout_s)
        self._headers = headers

    def models(self) -> ReplicaModels:
        body = self._call("GET", "/v1/models").json()
        entries = body.get("data", []) if isinstance(body, dict) else []
        names = frozenset(str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e)
        limits = [
            e["max_lora_rank"]
            for e in entries
            if isinstance(e, dict) and isinstance(e.get("max_lora_rank"), int)
        ]
        return ReplicaModels(names, min(limits) if limits else None)

    def load(self, name: str, path: Path) -> None:
        self._call("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})

    def unload(self, name: str) -> None:
        self._call("POST", "/v1/unload_lora_adapter", {"lora_name": name})

    def _call(self, method: str, path: str, body: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = self._client.request(
                method, f"{self.url}{path}", json=body, headers=self._headers
            )
        except httpx.HTTPError as e:
            msg = f"{method} {path}: {type(e).__name__}: {e}"
            raise ReplicaError(msg) from e
        if response.status_code >= httpx.codes.BAD_REQUEST:
            msg = f"{method} {path}: {response.status_code} {_said(response)}"
            raise ReplicaError(msg)
        return response

    def close(self) -> None:
        self._client.close()


def _said(response: httpx.Response) -> str:
    """The error message of an OpenAI-style error body, else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:_REASON_CHARS]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])[:_REASON_CHARS]
    return str(body)[:_REASON_CHARS]


@dataclass(frozen=True, slots=True)
class FleetProblem:
    """A replica that cannot serve a version yet, and why."""

    replica: str
    version: str | None
    reason: str

    def describe(self) -> str:
        what = f"{self.version} on " if self.version else ""
        return f"{what}{self.replica}: {self.reason}"


class AdapterFleet:
    """Loads, confirms and unloads versions on every replica (see the module docstring).

    ``adapter_dir`` maps a version to the adapter directory *as the replicas see it*
    (the registry's path, or the same registry on a shared volume mounted elsewhere).
    """

    def __init__(self, replicas: Sequence[Replica], adapter_dir: Callable[[str], Path]) -> None:
        self.replicas = tuple(replicas)
        self._adapter_dir = adapter_dir
        self.problems: tuple[FleetProblem, ...] = ()
        """What the last :meth:`prepare` found (empty: every replica serves every version)."""

    def prepare(self, versions: Iterable[str]) -> list[FleetProblem]:
        """Make every replica list every version in ``versions``; the problems left."""
        wanted = sorted({v for v in versions if v != BASE_VERSION})
        problems: list[FleetProblem] = []
        for replica in self.replicas:
            problems += self._prepare_one(replica, wanted)
        self.problems = tuple(problems)
        for problem in problems:
            logger.warning("adapter controller: %s", problem.describe())
        return problems

    def _prepare_one(self, replica: Replica, wanted: list[str]) -> list[FleetProblem]:
        try:
            listed = replica.models()
        except ReplicaError as e:
            return [FleetProblem(replica.url, None, f"unreachable ({e})")]
        problems = []
        loaded = False
        for version in wanted:
            if version in listed.names:
                continue
            problem = self._load(replica, version, listed.max_lora_rank)
            if problem is None:
                loaded = True
            else:
                problems.append(problem)
        if not loaded:
            return problems
        try:  # confirm: a replica serves a version only once it lists it
            names = replica.models().names
        except ReplicaError as e:
            return [*problems, FleetProblem(replica.url, None, f"unreachable ({e})")]
        failed = {p.version for p in problems}
        missing = [v for v in wanted if v not in names and v not in failed]
        return problems + [
            FleetProblem(replica.url, v, "loaded, but /v1/models does not list it") for v in missing
        ]

    def _load(self, replica: Replica, version: str, limit: int | None) -> FleetProblem | None:
        path = self._adapter_dir(version)
        rank = adapter_rank(path)
        if limit is not None and rank is not None and rank > limit:
            reason = f"LoRA rank {rank} is above the replica's max_lora_rank {limit}"
            return FleetProblem(replica.url, version, reason)
        try:
            replica.load(version, path)
        except ReplicaError as e:
            return FleetProblem(replica.url, version, f"refused to load it ({e})")
        logger.info("adapter controller: loaded %s into %s", version, replica.url)
        return None

    def retire(self, keep: Collection[str], managed: Collection[str]) -> list[FleetProblem]:
        """Unload, from every replica, the versions in ``managed`` (the registry's) not in
        ``keep``; other names (the base model, adapters loaded by hand) are left alone."""
        problems = []
        for replica in self.replicas:
            try:
                listed = replica.models().names
            except ReplicaError as e:
                problems.append(FleetProblem(replica.url, None, f"unreachable ({e})"))
                continue
            for version in sorted(listed & set(managed) - set(keep)):
                try:
                    replica.unload(version)
                except ReplicaError as e:
                    problems.append(FleetProblem(replica.url, version, f"did not unload ({e})"))
                else:
                    logger.info("adapter controller: unloaded %s from %s", version, replica.url)
        return problems
