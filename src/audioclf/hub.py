"""Hugging Face Hub weights at a pinned revision, downloaded once, then offline.

``model_params.<model>.pretrained`` names either a local folder (written by
``save_pretrained`` or ``hf download --local-dir``) or a Hub model id, and
``model_params.<model>.revision`` the commit (or tag, or branch) of that id. The first run
downloads that revision into the Hugging Face cache (resumable: ``huggingface_hub``'s
``snapshot_download``); every later run finds it there and never touches the network. With
``HF_HUB_OFFLINE=1``, or no network, a revision that is not cached fails at once with the
command that fetches it, never after a time-out and never as a silent random init.

Only what a model needs is fetched: its config, its feature extractor's settings, its model
card (for the licence) and its safetensors weights. A repository without safetensors weights
gets its pickled ``pytorch_model.bin`` fetched instead and loaded with ``weights_only=True``,
which refuses any object other than tensors (a payload never runs). Remote code is never
trusted. Each weight file is checked against the sha256 the Hub published for it (the name
of its blob in the cache), and the run records id, revision, commit, weight hash and
licence (:meth:`Snapshot.record`). After loading, only the classifier head may be missing or
resized; any other missing weight is an error.

``HF_ENDPOINT`` and ``HF_HUB_CACHE`` (or ``HF_HOME``) are read when a download is asked for,
not when ``huggingface_hub`` is first imported, so a process that sets them later is obeyed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from audioclf.errors import UserError

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
WEIGHT_FILES = SAFETENSORS_FILES + PICKLE_FILES
PREPROCESSOR_FILE = "preprocessor_config.json"
MODEL_CARD = "README.md"
# what a model needs of a Hub repository (its TensorFlow, Flax, ONNX copies are never fetched)
HUB_PATTERNS = (
    "config.json",
    PREPROCESSOR_FILE,
    MODEL_CARD,
    "*.safetensors",
    "*.safetensors.index.json",
)
PICKLE_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
SHA256 = re.compile(r"[0-9a-f]{64}")
TRUE = {"1", "true", "yes", "on"}


class PretrainedWeightsError(UserError, FileNotFoundError):
    """Pretrained weights that are not available, not intact, or that do not fit the model."""


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint on this machine, and where it came from.

    Attributes:
        folder: the folder holding its files.
        name: the Hub id or folder as params named it.
        revision: the revision asked for (None for a folder).
        commit: the commit it resolved to (None for a folder).
        weights: the weight files loaded (safetensors if the checkpoint has them).
        sha256: sha256 of the one weight file; of ``"<name> <sha256>"`` lines for a sharded one.
        licence: the model card's ``license``, or None.
    """

    folder: str
    name: str
    revision: str | None
    commit: str | None
    weights: tuple[str, ...]
    sha256: str
    licence: str | None

    @property
    def safetensors(self) -> bool:
        return all(w.endswith((".safetensors", ".safetensors.index.json")) for w in self.weights)

    def record(self) -> dict[str, str]:
        """What a run records of it (MLflow tags and params, a checkpoint's ``pretrained``)."""
        out = {
            "pretrained_id": self.name,
            "pretrained_revision": self.revision or "folder",
            "pretrained_commit": self.commit or "unknown (a local folder)",
            "pretrained_weights": ",".join(self.weights),
            "pretrained_sha256": self.sha256,
        }
        return {**out, **({"pretrained_licence": self.licence} if self.licence else {})}


def download_command(name: str, revision: str, patterns: tuple[str, ...] = HUB_PATTERNS) -> str:
    """The shell command that puts the files of ``name`` at ``revision`` that match ``patterns``
    into the Hugging Face cache.

    >>> download_command("MIT/ast", "main", ("config.json", "*.safetensors"))
    "hf download MIT/ast --revision main --include config.json --include '*.safetensors'"
    """
    include = " ".join(f"--include {shlex.quote(p)}" for p in patterns)
    return f"hf download {name} --revision {revision} {include}"


def _how_to_get(
    name: str, revision: str, key: str, patterns: tuple[str, ...] = HUB_PATTERNS
) -> str:
    return (
        f"Where there is internet run `{download_command(name, revision, patterns)}` (it "
        "fills the Hugging "
        f"Face cache, which may be copied to this machine; or add `--local-dir <folder>` and set "
        f"{key}=<folder>); or set {key}=null to train from scratch."
    )


def _looks_like_path(name: str) -> bool:
    # Hub ids are 'name' or 'owner/name'; anything else is meant as a folder
    return (
        name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def hub_cache() -> str | None:
    """The Hugging Face cache from the environment now (None: the library's default)."""
    home = _env("HF_HOME")
    return _env("HF_HUB_CACHE") or (str(Path(home, "hub")) if home else None)


def hub_offline() -> bool:
    """Whether downloads are off: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), set now or
    when ``huggingface_hub`` was imported."""
    from huggingface_hub import constants

    now = (_env("HF_HUB_OFFLINE") or _env("TRANSFORMERS_OFFLINE") or "").lower() in TRUE
    return now or constants.HF_HUB_OFFLINE


def _folder_weights(folder: Path) -> tuple[str, ...]:
    present = {p.name for p in folder.iterdir()}
    for index, single in (SAFETENSORS_FILES[::-1], PICKLE_FILES[::-1]):
        if single in present:
            return (single,)
        if index in present:
            shards = json.loads((folder / index).read_text()).get("weight_map", {}).values()
            return (index, *sorted(set(shards)))
    return ()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_hash(
    folder: Path, weights: tuple[str, ...], name: str, revision: str, key: str
) -> str:
    """sha256 of the weights, each checked against its cache blob's name (the Hub's sha256)."""
    hashes = []
    for file in weights:
        path = folder / file
        digest = _sha256(path)
        published = Path(os.path.realpath(path)).name
        if path.is_symlink() and SHA256.fullmatch(published) and published != digest:
            raise PretrainedWeightsError(
                f"{key}: {name}@{revision}: {file} does not match the sha256 the Hub published "
                f"for it "
                f"(expected {published}, the file has {digest}): the download or the cached copy "
                f"was altered. Fetch it again: "
                f"`{download_command(name, revision)} --force-download`"
            )
        hashes.append(digest)
    if len(weights) == 1:
        return hashes[0]
    lines = "".join(f"{file} {h}\n" for file, h in zip(weights, hashes, strict=True))
    return hashlib.sha256(lines.encode()).hexdigest()


def _licence(folder: Path) -> str | None:
    from huggingface_hub.repocard import metadata_load

    card = folder / MODEL_CARD
    meta = metadata_load(card) if card.is_file() else None
    licence = (meta or {}).get("license")
    if licence == "other" and meta.get("license_name"):
        licence = f"other: {meta['license_name']}"
    return ", ".join(licence) if isinstance(licence, list) else licence


def _download(name: str, revision: str, patterns: tuple[str, ...], key: str) -> Path:
    """The snapshot folder of ``name`` at ``revision`` with ``patterns``: from the cache if it is
    complete there, else downloaded (unless offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    args = {"revision": revision, "allow_patterns": list(patterns), "cache_dir": hub_cache()}
    try:
        return Path(snapshot_download(name, local_files_only=True, **args))
    except HFValidationError as exc:
        raise PretrainedWeightsError(
            f"{key}: {name!r} is neither a folder nor a Hugging Face model id ({exc})"
        ) from None
    except LocalEntryNotFoundError as exc:
        if hub_offline():
            raise PretrainedWeightsError(
                f"{key}: {name!r} at revision {revision!r} is not in the Hugging Face cache "
                f"({hub_cache() or 'the default'}) and downloads are off (HF_HUB_OFFLINE). "
                f"{_how_to_get(name, revision, key, patterns)}"
            ) from exc
    endpoint = _env("HF_ENDPOINT")  # read now: huggingface_hub read it once, at its import
    try:
        return Path(snapshot_download(name, endpoint=endpoint, **args))
    except RevisionNotFoundError:
        where = endpoint or "https://huggingface.co"
        raise PretrainedWeightsError(
            f"{key.rsplit('.', 1)[0]}.revision: {name!r} has no revision {revision!r} on {where}; "
            f"set a commit hash, tag or branch listed at {where}/{name}/commits/main"
        ) from None
    except RepositoryNotFoundError:
        raise PretrainedWeightsError(
            f"{key}: no model {name!r} on {endpoint or 'the Hugging Face Hub'} (or it is private "
            f"or gated: run `hf auth login`); check the id, or set {key}=<folder>"
        ) from None
    except LocalEntryNotFoundError as exc:  # no network, and not cached
        reason = str(exc).strip().splitlines()[0][:200]
        raise PretrainedWeightsError(
            f"{key}: {name!r} at revision {revision!r} is not in the Hugging Face cache and the "
            f"Hub cannot be reached ({reason}). {_how_to_get(name, revision, key, patterns)}"
        ) from None
    except OSError as exc:  # huggingface_hub's size check on a cut or padded download
        reason = str(exc).strip().splitlines()[0][:300]
        raise PretrainedWeightsError(
            f"{key}: the download of {name!r} at revision {revision!r} failed ({reason}). Run "
            f"again to resume it, or "
            f"`{download_command(name, revision, patterns)} --force-download`"
        ) from None


def fetch(name: str, revision: str | None, key: str) -> Snapshot:
    """``name`` (a folder, or a Hub id at ``revision``) on this machine, checked and described.

    A relative folder is taken from the working directory (a stage resolves one under the
    repository root first: :meth:`audioclf.config.Params.located`).

    Args:
        name: a folder or a Hub id.
        revision: commit hash, tag or branch of a Hub id (None: ``main``); unused for a folder.
        key: the params key naming ``name``, for messages.

    Raises:
        PretrainedWeightsError: a folder that does not exist or holds no model; a Hub id that is
            not cached where downloads are off or impossible, an unknown id or revision, a
            download cut short, a weight file whose hash is not the published one.
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        weights = _folder_weights(folder)
        if not (folder / "config.json").is_file() or not weights:
            present = sorted(p.name for p in folder.iterdir())[:8]
            raise PretrainedWeightsError(
                f"{key}: folder {str(folder)!r} holds no Hugging Face model (needs config.json and "
                f"one of {', '.join(WEIGHT_FILES)}; found {present or 'nothing'}). "
                f"{_how_to_get('<model id>', '<commit>', key)}"
            )
        digest = _verified_hash(folder, weights, name, "folder", key)
        return Snapshot(str(folder), name, None, None, weights, digest, _licence(folder))
    if _looks_like_path(name):
        raise PretrainedWeightsError(
            f"{key}: folder {name!r} does not exist. {_how_to_get('<model id>', '<commit>', key)}"
        )
    revision = revision or "main"
    folder = _download(name, revision, HUB_PATTERNS, key)
    if not _folder_weights(folder):  # no safetensors: the pickled weights, loaded weights-only
        folder = _download(name, revision, PICKLE_PATTERNS, key)
    weights = _folder_weights(folder)
    if not (folder / "config.json").is_file() or not weights:
        raise PretrainedWeightsError(
            f"{key}: {name!r} at revision {revision!r} holds no transformers model (needs "
            f"config.json and one of {', '.join(WEIGHT_FILES)}); is it a model repository?"
        )
    digest = _verified_hash(folder, weights, name, revision, key)
    return Snapshot(str(folder), name, revision, folder.name, weights, digest, _licence(folder))


def resolve_source(name: str, key: str, revision: str | None = None) -> str:
    """The folder holding ``name`` at ``revision`` (downloaded if needed): :func:`fetch`'s."""
    return fetch(name, revision, key).folder


def load_pretrained(
    model_cls: Any,
    name: str,
    key: str,
    *,
    revision: str | None = None,
    head_prefix: str,
    **overrides: Any,
) -> nn.Module:
    """Load ``model_cls.from_pretrained`` from ``name`` at ``revision``, float32, with a new head.

    Args:
        model_cls: a ``transformers`` model class, e.g. ``ASTForAudioClassification``, or an
            auto class such as ``AutoModelForAudioClassification``.
        name: Hub id or folder (:func:`fetch`).
        key: the params key naming ``name``, for messages.
        revision: the Hub revision (None: ``main``).
        head_prefix: state-dict prefix of the classifier head, the only part allowed
            to be newly initialised (e.g. ``"classifier."``).
        overrides: config values, e.g. ``num_labels``.

    Returns:
        The model; its ``pretrained_snapshot`` attribute is the :class:`Snapshot` it came from.

    Raises:
        PretrainedWeightsError: not available (:func:`fetch`), pickled weights holding other
            objects than tensors, or weights other than the head missing.
    """
    import pickle

    snapshot = fetch(name, revision, key)
    try:
        model, info = model_cls.from_pretrained(
            snapshot.folder,
            local_files_only=True,
            use_safetensors=snapshot.safetensors,
            weights_only=True,
            trust_remote_code=False,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
            **overrides,
        )
    except (pickle.UnpicklingError, OSError, RuntimeError) as exc:
        text = str(exc).strip()
        if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
            raise PretrainedWeightsError(
                f"{key}: {name!r} ({', '.join(snapshot.weights)} in {snapshot.folder}) holds "
                f"objects other than tensors: a pickle that would run code when loaded. It was "
                f"refused (loaded with weights_only=True; nothing in it ran). Use a revision with "
                f"safetensors weights"
            ) from None
        first = text.splitlines()[0][:300] if text else type(exc).__name__
        raise PretrainedWeightsError(
            f"{key}: {name!r} could not be loaded from {snapshot.folder} ({first})"
        ) from None
    new = set(info.get("missing_keys", ())) | {m[0] for m in info.get("mismatched_keys", ())}
    not_head = sorted(k for k in new if not k.startswith(head_prefix))
    if not_head:
        raise PretrainedWeightsError(
            f"{key}: {name!r} lacks {len(not_head)} weights outside the classifier head (e.g. "
            f"{not_head[:3]}); they would be randomly initialised. Is it a checkpoint of "
            f"{getattr(model_cls, '__name__', model_cls)}?"
        )
    model = model.float()
    model.pretrained_snapshot = snapshot
    return model


def feature_extractor(folder: str, key: str) -> Any:
    """The checkpoint's own ``AutoFeatureExtractor`` from its ``folder`` (:func:`fetch`), offline.

    Raises:
        PretrainedWeightsError: the folder holds no audio feature extractor.
    """
    from transformers import AutoFeatureExtractor

    try:
        return AutoFeatureExtractor.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError) as exc:
        raise PretrainedWeightsError(
            f"{key}: {folder} holds no audio feature extractor ({PREPROCESSOR_FILE}): an audio "
            f"checkpoint is needed ({str(exc).strip().splitlines()[0][:200]})"
        ) from None
