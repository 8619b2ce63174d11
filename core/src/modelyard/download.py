"""Fetch a builtin model's files from its hub into MODELYARD_HOME/cache. Runs in the worker only:
the hub libraries are imported here, lazily."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from modelyard import config
from modelyard.errors import LaunchFailed
from modelyard.types import ModelSpec

COMPLETE = ".modelyard-complete"


def cache_dir(spec: ModelSpec) -> Path:
    hub = spec.model_hub or "huggingface"
    return config.home() / "cache" / hub / spec.model_id.replace("/", "--") / (spec.model_revision or "main")


def completion_marker(target: Path, files: Sequence[str] | None) -> Path:
    """What says these files are all here: the whole repository, or one set of patterns of it
    (one quantization of a GGUF repository), so fetching a second set is not skipped."""
    if files is None:
        return target / COMPLETE
    digest = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:12]
    return target / f"{COMPLETE}-{digest}"


def fetch(spec: ModelSpec, progress: Callable[[str, float, str], None], files: Sequence[str] | None = None) -> str:
    """The local folder holding the spec's files (those matching `files`, the engine's patterns,
    or all), downloaded first if they are not cached."""
    if not spec.model_id:
        raise LaunchFailed("This spec has neither a model_uri nor a model_id: give model_path at launch.")
    target = cache_dir(spec)
    marker = completion_marker(target, files)
    if marker.exists() or (target / COMPLETE).exists():
        return str(target)
    patterns = list(files) if files is not None else None
    hub = spec.model_hub or "huggingface"
    progress("downloading", 0.3, f"downloading {spec.model_id} from {hub} into {target}")
    try:
        if hub == "huggingface":
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id=spec.model_id, revision=spec.model_revision, local_dir=str(target),
                              allow_patterns=patterns)
        elif hub == "modelscope":
            from modelscope import snapshot_download

            snapshot_download(spec.model_id, revision=spec.model_revision or "master", local_dir=str(target),
                              allow_patterns=patterns)
        else:
            raise LaunchFailed(f"Unknown model_hub {hub!r}: use huggingface or modelscope.")
    except ImportError as exc:
        package = "huggingface_hub" if hub == "huggingface" else "modelscope"
        raise LaunchFailed(f"Downloading from {hub} needs the {package} package ({exc}); "
                           f"pip install {package}, or give model_path.") from None
    except LaunchFailed:
        raise
    except Exception as exc:
        raise LaunchFailed(f"Downloading {spec.model_id} from {hub} failed: {type(exc).__name__}: {exc}. "
                           "Check the network, or give model_path to use local files.") from None
    marker.write_text("")
    return str(target)
