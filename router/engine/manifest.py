"""Model manifests: what a built model directory holds, and the check that it is intact.

A manifest is ``manifest.json`` beside the built files. It is written last by the build, so its
presence means the build finished; every file it lists carries a sha256 that :func:`load_manifest`
checks before anything is handed to ONNX Runtime (no pickle, no unchecked weights).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from router.errors import ModelIntegrityError, ModelNotBuiltError, ModelUnavailableError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
# The KV cache layouts a decoder graph may have (router/modelbuild/graph.py writes them, the engine
# runs them): "concat" returns a cache one slot longer each pass, "inplace" writes a bound buffer.
KV_CACHES = ("concat", "inplace")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def build_command(name: str) -> str:
    return f"router models build {name}"


@dataclass(frozen=True)
class Architecture:
    family: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rope_theta: float


@dataclass(frozen=True)
class Manifest:
    """Everything the engine needs to know about one built model."""

    name: str
    dtype: str
    source: dict[str, Any]
    files: dict[str, str]  # relative path -> sha256
    architecture: Architecture
    context_length: int
    eos_token_ids: list[int]
    chat_template: str
    decoder_file: str = "model.onnx"
    tokenizer_file: str = "tokenizer.json"
    notes: str = ""
    kv_cache: str = "concat"  # decoder_file's layout, or "inplace": router/modelbuild/graph.py, build_llama_graph
    # Graphs of the same weights in other KV cache layouts: layout -> file (e.g. the default build's
    # {"inplace": "model-inplace.onnx"}, which the engine runs on the CPU provider).
    extra_decoders: dict[str, str] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    @property
    def kv_caches(self) -> tuple[str, ...]:
        """Every KV cache layout this build has a decoder for, ``kv_cache`` (the default) first."""
        return (self.kv_cache, *sorted(k for k in self.extra_decoders if k != self.kv_cache))

    def decoder_for(self, kv_cache: str) -> str:
        """The decoder file of one of :attr:`kv_caches`."""
        if kv_cache == self.kv_cache:
            return self.decoder_file
        if kv_cache not in self.extra_decoders:
            raise ModelUnavailableError(
                f"model '{self.name}' has no decoder with the {kv_cache!r} KV cache (it has: "
                f"{', '.join(self.kv_caches)}); set engine.kv_cache to one of those or to 'auto'"
            )
        return self.extra_decoders[kv_cache]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["architecture"] = Architecture(**data["architecture"])
        return cls(**data)


def manifest_path(model_dir: Path) -> Path:
    return model_dir / MANIFEST_NAME


def read_manifest(model_dir: Path, name: str | None = None) -> Manifest:
    """Parse ``manifest.json`` without checking file hashes."""
    name = name or model_dir.name
    path = manifest_path(model_dir)
    if not path.is_file():
        raise ModelNotBuiltError(
            f"model '{name}' is not built: {path} is missing. Build it with `{build_command(name)}`."
        )
    try:
        manifest = Manifest.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelIntegrityError(
            f"manifest {path} is corrupt ({exc}). Rebuild with `{build_command(name)} --force`."
        ) from exc
    if manifest.manifest_version != MANIFEST_VERSION:
        raise ModelIntegrityError(
            f"manifest {path} has version {manifest.manifest_version}, this router reads "
            f"{MANIFEST_VERSION}. Rebuild with `{build_command(name)} --force`."
        )
    for required in (manifest.decoder_file, manifest.tokenizer_file, *manifest.extra_decoders.values()):
        if required not in manifest.files:
            raise ModelIntegrityError(
                f"manifest {path} does not list {required}. Rebuild with `{build_command(name)} --force`."
            )
    return manifest


def verify_files(model_dir: Path, manifest: Manifest) -> None:
    """Check every listed file exists and matches its sha256."""
    for rel, expected in manifest.files.items():
        path = model_dir / rel
        if not path.is_file():
            raise ModelNotBuiltError(
                f"model '{manifest.name}' is incomplete: {path} is missing. "
                f"Rebuild with `{build_command(manifest.name)} --force`."
            )
        actual = sha256_file(path)
        if actual != expected:
            raise ModelIntegrityError(
                f"model file {path} has sha256 {actual[:12]}…, the manifest expects {expected[:12]}…: "
                f"it was altered or partly written. Rebuild with `{build_command(manifest.name)} --force`."
            )


def load_manifest(model_dir: Path, name: str | None = None) -> Manifest:
    """Read the manifest and verify every file against it."""
    manifest = read_manifest(model_dir, name)
    verify_files(model_dir, manifest)
    return manifest
