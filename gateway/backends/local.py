"""The ``local`` backend: the registry's base model with its LoRA adapters, in process.

One base model is loaded once; the adapter of each version (``registry/model_vN``,
PEFT format) is loaded on first use next to the others and switched per request;
the version ``base`` disables adapters. At most ``adapter_cache_size`` adapters stay
loaded: the least recently used one is unloaded first. Whole replies asked for at the
same time by the same version (and temperature) are generated as one left-padded batch
of up to ``batch_size``, collected for ``batch_wait_s``; streams are generated one by
one. Generation runs in a worker thread, so the event loop stays free; an fp32 adapter
is folded into the base weights while it generates (as the trainer's gate does), which
saves about a fifth of CPU decoding time.

With ``reply_cache_size`` > 0, greedy whole replies (no temperature) are kept per
(adapter, conversation, token limit): a greedy reply is a function of those, so asking
again returns it without generating, and identical requests in flight share one
generation. Loading or unloading an adapter forgets its replies. Off by default: a
deployment with diverse traffic gains little from it; the demo's simulated users, who
re-ask a finite prompt set, gain most of its serving time.

It is also an :class:`gateway.backends.base.AdapterHost`: adapters can be loaded from a
given path and unloaded at runtime, as vLLM's ``/v1/load_lora_adapter`` does, so the
rollout service's adapter controller drives it like a vLLM replica. An adapter whose rank
exceeds ``max_lora_rank`` is refused, on demand or explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.backends.base import BASE_VERSION
from gateway.errors import BadRequestError, NotFoundError, UpstreamError
from gateway.limits import Lru
from gateway.schemas import ChatRequest, Reply, Usage
from trainer.adapter_fleet import adapter_rank

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    """A whole reply waiting for its batch."""

    request: ChatRequest
    adapter: str
    future: asyncio.Future[Reply]

    @property
    def group(self) -> tuple[str, float]:
        """Requests of one group can share a batch: same adapter, same sampling."""
        return self.adapter, self.request.temperature or 0.0


ReplyKey = tuple[str, int, tuple[tuple[str, str], ...], int]
"""(adapter, times it was unloaded, conversation, token limit): what a greedy reply is of."""


def _fail(batch: Sequence[_Pending], error: Exception) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)


class LocalBackend:
    """Replies of any registered version from ``model`` + ``tokenizer`` (thread-safe)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        registry_root: Path,
        max_new_tokens: int,
        adapter_cache_size: int,
        batch_size: int = 1,
        batch_wait_s: float = 0.0,
        max_lora_rank: int | None = None,
        reply_cache_size: int = 0,
    ) -> None:
        self.max_lora_rank = max_lora_rank
        """The highest LoRA rank this backend loads (None: any)."""
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._pending: list[_Pending] = []
        self._batcher: asyncio.Task[None] | None = None
        self.batches = 0
        """Generations run (a batch counts once)."""
        self.generated: Counter[str] = Counter()
        """Replies generated per adapter (not those answered from the reply cache)."""
        self.cache_hits = 0
        """Replies answered from the reply cache or shared with an identical one in flight."""
        self._replies: Lru[ReplyKey, Reply] | None = (
            Lru(reply_cache_size) if reply_cache_size > 0 else None
        )
        self._inflight: dict[ReplyKey, asyncio.Future[Reply]] = {}
        self._drops: Counter[str] = Counter()
        """Times each adapter was unloaded: a reply cached before that is stale."""
        self._base = model
        self._peft: Any = None
        self._tokenizer = tokenizer
        self._registry_root = registry_root
        self._max_new_tokens = max_new_tokens
        self._cache_size = adapter_cache_size
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Path,
        *,
        registry_root: Path,
        max_new_tokens: int,
        adapter_cache_size: int,
        batch_size: int = 1,
        batch_wait_s: float = 0.0,
        max_lora_rank: int | None = None,
        reply_cache_size: int = 0,
    ) -> LocalBackend:
        """Load the base model at ``checkpoint`` (a local ``from_pretrained`` directory)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy, optional

        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(checkpoint)
        model.eval()  # type: ignore[no-untyped-call]
        return cls(
            model,
            tokenizer,
            registry_root=registry_root,
            max_new_tokens=max_new_tokens,
            adapter_cache_size=adapter_cache_size,
            batch_size=batch_size,
            batch_wait_s=batch_wait_s,
            max_lora_rank=max_lora_rank,
            reply_cache_size=reply_cache_size,
        )

    @property
    def loaded(self) -> list[str]:
        """The adapters loaded now, least recently used first."""
        return list(self._loaded)

    async def complete(self, request: ChatRequest, adapter: str) -> Reply:
        key = self._reply_key(request, adapter)
        if key is not None and self._replies is not None:
            cached = self._replies.get(key)
            if cached is not None:
                self.cache_hits += 1
                return cached
            shared = self._inflight.get(key)
            if shared is not None:
                self.cache_hits += 1
                return await asyncio.shield(shared)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        if key is not None:
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._settle(key, done))
        self._pending.append(_Pending(request, adapter, future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._batches(), name="gateway-batches")
        return await asyncio.shield(future)  # a caller that leaves does not fail the others

    def _reply_key(self, request: ChatRequest, adapter: str) -> ReplyKey | None:
        """The cache key of a greedy whole reply; None when replies are not cached."""
        if self._replies is None or request.temperature:
            return None
        conversation = tuple((m["role"], m["content"]) for m in request.conversation())
        return adapter, self._drops[adapter], conversation, self._limit(request)

    def _settle(self, key: ReplyKey, done: asyncio.Future[Reply]) -> None:
        self._inflight.pop(key, None)
        if self._replies is not None and not done.cancelled() and done.exception() is None:
            self._replies.put(key, done.result())

    def _limit(self, request: ChatRequest) -> int:
        return min(request.token_limit or self._max_new_tokens, self._max_new_tokens)

    async def _batches(self) -> None:
        """Generate what is pending, one group's batch at a time, until nothing is."""
        while self._pending:
            if self._batch_wait_s > 0:
                await asyncio.sleep(self._batch_wait_s)
            group = self._pending[0].group
            batch = [p for p in self._pending if p.group == group][: self._batch_size]
            for pending in batch:
                self._pending.remove(pending)
            requests = [p.request for p in batch]
            try:
                replies = await asyncio.to_thread(self._generate, requests, group[0], None)
            except UpstreamError as e:
                _fail(batch, e)
                continue
            except Exception as e:  # every caller of the batch gets the failure
                msg = f"generation with {group[0]} failed: {e}"
                _fail(batch, UpstreamError(msg))
                continue
            self.generated[group[0]] += len(batch)
            for pending, reply in zip(batch, replies, strict=True):
                if not pending.future.done():
                    pending.future.set_result(reply)

    async def stream(self, request: ChatRequest, adapter: str) -> AsyncIterator[str | Usage]:
        from transformers import TextIteratorStreamer  # heavy, optional

        await asyncio.to_thread(self._check, adapter)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []
        done: list[Reply] = []

        def run() -> None:
            try:
                done.extend(self._generate([request], adapter, streamer))
            except BaseException as e:  # handed to the stream's reader, which raises it
                failure.append(e)
                streamer.end()  # type: ignore[no-untyped-call]

        thread = threading.Thread(target=run, name="gateway-generate", daemon=True)
        thread.start()
        pieces = iter(streamer)
        while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
            if piece:
                yield piece
        await asyncio.to_thread(thread.join)
        if failure:
            msg = f"generation with {adapter} failed: {failure[0]}"
            raise UpstreamError(msg) from failure[0]
        self.generated[adapter] += 1
        if done:
            yield Usage(
                prompt_tokens=done[0].prompt_tokens, completion_tokens=done[0].completion_tokens
            )

    async def aclose(self) -> None:
        return None

    def _check(self, adapter: str) -> None:
        if adapter != BASE_VERSION and adapter not in self._loaded:
            self._adapter_dir(adapter)

    def _adapter_dir(self, adapter: str) -> Path:
        path = self._registry_root / adapter
        if not (path / "adapter_config.json").is_file():
            msg = (
                f"the router chose {adapter}, which has no adapter at {path}: train it "
                "(`loraloop train`) or point LORALOOP_TRAINER__REGISTRY_DIR at its registry"
            )
            raise UpstreamError(msg, code="adapter_unavailable")
        return path

    def _generate(
        self, requests: Sequence[ChatRequest], adapter: str, streamer: Any
    ) -> list[Reply]:
        import torch  # heavy, optional

        prompts = [
            self._tokenizer.apply_chat_template(
                r.conversation(), tokenize=False, add_generation_prompt=True
            )
            for r in requests
        ]
        self._tokenizer.padding_side = "left"
        batch = self._tokenizer(
            prompts, add_special_tokens=False, return_tensors="pt", padding=True
        )
        limits = [self._limit(r) for r in requests]
        temperature = requests[0].temperature
        options: dict[str, Any] = {"do_sample": bool(temperature), "max_new_tokens": max(limits)}
        if temperature:
            options["temperature"] = temperature
        with self._lock, self._serving(adapter) as model, torch.no_grad():
            out = model.generate(
                **batch, pad_token_id=self._tokenizer.pad_token_id, streamer=streamer, **options
            )
            self.batches += 1
        width = batch["input_ids"].shape[1]
        return [
            self._reply(row[width:].tolist()[:limit], limit, int(mask.sum()))
            for row, mask, limit in zip(out, batch["attention_mask"], limits, strict=True)
        ]

    def _reply(self, ids: list[int], limit: int, prompt_tokens: int) -> Reply:
        eos = self._tokenizer.eos_token_id
        ended = eos in ids
        if ended:  # what follows the end is the batch's padding
            ids = ids[: ids.index(eos) + 1]
        return Reply(
            text=self._tokenizer.decode(ids, skip_special_tokens=True).strip(),
            finish_reason="stop" if ended or len(ids) < limit else "length",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(ids),
        )

    @contextlib.contextmanager
    def _serving(self, adapter: str) -> Iterator[Any]:
        if adapter == BASE_VERSION:
            if self._peft is None:
                yield self._base
                return
            with self._peft.disable_adapter():
                yield self._peft
            return
        from trainer.evaluation import merged_adapter  # heavy, optional (torch)

        self._load(adapter)
        self._peft.set_adapter(adapter)
        with merged_adapter(self._peft):
            yield self._peft

    async def load_adapter(self, name: str, path: Path) -> None:
        """Load the adapter at ``path`` as ``name`` (again, when ``name`` is loaded already)."""
        if name == BASE_VERSION:
            msg = f"{BASE_VERSION!r} names the base model without an adapter: pick another name"
            raise BadRequestError(msg, param="lora_name", code="invalid_lora_name")
        if not (path / "adapter_config.json").is_file():
            msg = f"no PEFT adapter at {path} (adapter_config.json is missing)"
            raise BadRequestError(msg, param="lora_path", code="adapter_not_found")

        def load() -> None:
            with self._lock:
                if name in self._loaded:
                    self._drop(name)
                self._load_from(name, path)

        await asyncio.to_thread(load)

    async def unload_adapter(self, name: str) -> None:
        """Unload ``name``; a :class:`NotFoundError` when it is not loaded."""

        def unload() -> None:
            with self._lock:
                if name not in self._loaded:
                    msg = f"the adapter {name!r} is not loaded: loaded are {self.loaded}"
                    raise NotFoundError(msg, param="lora_name", code="adapter_not_loaded")
                self._drop(name)
                logger.info("unloaded adapter %s on request", name)

        await asyncio.to_thread(unload)

    def _drop(self, name: str) -> None:
        """Remove a loaded adapter (the caller holds the lock)."""
        del self._loaded[name]
        self._drops[name] += 1
        if not self._loaded:  # PEFT keeps at least one adapter: take the LoRA layers out
            self._base = self._peft.unload()
            self._peft = None
            return
        self._peft.set_adapter(next(iter(self._loaded)))
        self._peft.delete_adapter(name)

    def _load(self, adapter: str) -> None:
        if adapter in self._loaded:
            self._loaded.move_to_end(adapter)
            return
        self._load_from(adapter, self._adapter_dir(adapter))

    def _load_from(self, adapter: str, path: Path) -> None:
        from peft import PeftModel  # heavy, optional

        self._check_rank(adapter, path)
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._base, str(path), adapter_name=adapter)
        else:
            self._peft.load_adapter(str(path), adapter_name=adapter)
        self._peft.eval()
        self._loaded[adapter] = None
        logger.info("loaded adapter %s from %s", adapter, path)
        while len(self._loaded) > self._cache_size:
            evicted, _ = self._loaded.popitem(last=False)
            self._drops[evicted] += 1
            self._peft.set_adapter(adapter)
            self._peft.delete_adapter(evicted)
            logger.info("unloaded adapter %s (cache of %d)", evicted, self._cache_size)

    def _check_rank(self, adapter: str, path: Path) -> None:
        limit = self.max_lora_rank
        if limit is None:
            return
        rank = adapter_rank(path)
        if rank is not None and rank > limit:
            msg = (
                f"the adapter {adapter!r} has LoRA rank {rank}, above this server's limit of "
                f"{limit}: raise LORALOOP_GATEWAY__MAX_LORA_RANK or train with a lower rank"
            )
            raise BadRequestError(msg, param="lora_path", code="lora_rank_exceeded")
