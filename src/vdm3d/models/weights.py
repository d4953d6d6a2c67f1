"""Loading model weights safely, and turning "weights not here" into one sentence.

Safe by default: a checkpoint is read from ``.safetensors`` (no code runs while loading). Pickle
checkpoints (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) can execute arbitrary code when unpickled, so
they are refused with :class:`~vdm3d.errors.UnsafeCheckpointError` unless the caller passes
``trust_pickle=True`` (``vdm3d models convert CKPT OUT.safetensors --trust-pickle`` converts one
once). Even then ``torch.load(weights_only=True)`` is
tried first, which only rebuilds tensors and plain containers; the full unpickler is the last resort.

Hub loads (diffusers / transformers ``from_pretrained``) fail offline with an ``OSError`` whose cause
chain holds ``huggingface_hub``'s ``OfflineModeIsEnabled`` or ``LocalEntryNotFoundError``;
:func:`is_missing_weights` walks ``__cause__``/``__context__`` to recognise them, and
:func:`missing_weights_error` phrases the one sentence that says what to download and where.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import Tensor

from vdm3d.errors import InputError, MissingWeightsError, UnsafeCheckpointError

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
TRUST_FLAG = "--trust-pickle"  # of `vdm3d models convert`
CONVERT = "vdm3d models convert"


def load_state_dict(
    path: str | Path, trust_pickle: bool = False, *, device: str = "cpu"
) -> dict[str, Tensor]:
    """Read a flat ``name -> tensor`` dict from a checkpoint file.

    ``.safetensors`` always; pickle formats only with ``trust_pickle=True``. A Lightning-style
    ``{"state_dict": {...}}`` wrapper is unwrapped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"{path}: checkpoint file not found; check the path or download it there.")
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=device)
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"{path}: not a readable safetensors file ({e}); re-download it.") from e
    if suffix not in PICKLE_SUFFIXES:
        raise InputError(
            f"{path}: unknown checkpoint format {suffix!r}; give a .safetensors file "
            f"(convert {', '.join(PICKLE_SUFFIXES)} ones with `{CONVERT} CKPT OUT.safetensors {TRUST_FLAG}`)."
        )
    if not trust_pickle:
        raise UnsafeCheckpointError(
            f"{path}: pickle checkpoints can run code when loaded, so they are refused; if you trust its "
            f"source, convert it once with `{CONVERT} {path} {path.with_suffix('.safetensors')} {TRUST_FLAG}` "
            f"and use the .safetensors file."
        )
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch's zip format, or a raw pickle
        raise InputError(f"{path}: is not a PyTorch checkpoint (neither a zip archive nor a pickle); "
                         "check the file or download it again.")
    try:
        obj = torch.load(str(path), map_location=device, weights_only=True)
    except Exception:  # noqa: BLE001 - objects beyond tensors; the user explicitly trusted this file
        warn_trusted_pickle(path)
        try:
            obj = torch.load(str(path), map_location=device, weights_only=False)
        except Exception as e:  # noqa: BLE001 - a broken or foreign pickle fails in many ways
            reason = str(e).splitlines()[0].rstrip(".") if str(e) else type(e).__name__
            raise InputError(f"{path}: could not be unpickled ({reason}); check the file or download it again.") \
                from None
    return _flatten_state(obj, path)


def warn_trusted_pickle(path: str | Path) -> None:
    """The one line printed before a trusted pickle is unpickled in full (which can run its code)."""
    print(f"warning: {path}: unpickling in full because {TRUST_FLAG} was given; this runs any code the file holds, "
          "so use it only for files from a source you trust.", file=sys.stderr, flush=True)


def _flatten_state(obj, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(f"{path}: holds no flat name -> tensor state dict; save the model's state_dict().")
    skipped = sorted(str(k) for k, v in obj.items() if not isinstance(v, Tensor))
    if skipped:  # a training checkpoint's bookkeeping beside the weights (step, epoch, ...): not weights
        print(f"note: {path}: left out {len(skipped)} entries that are not tensors ({', '.join(skipped[:5])}"
              f"{', ...' if len(skipped) > 5 else ''})", file=sys.stderr, flush=True)
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def save_state_dict(state: dict[str, Tensor], path: str | Path) -> Path:
    """Write tensors as safetensors, atomically (a reader sees the old file or the new one, never half);
    contiguous CPU copies, so shared storage is split."""
    from safetensors.torch import save

    from vdm3d.io.runs import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, save({k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}))
    return path


def is_missing_weights(exc: BaseException) -> bool:
    """Whether an exception (or anything in its cause chain) means "files are not present locally"."""
    names = {
        "OfflineModeIsEnabled",
        "LocalEntryNotFoundError",
        "EntryNotFoundError",
        "RepositoryNotFoundError",
        "GatedRepoError",
        "HFValidationError",
    }
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if type(e).__name__ in names or isinstance(e, FileNotFoundError):
            return True
        text = str(e)
        if (
            "does not appear to have a file named" in text
            or "Can't load" in text
            or "offline mode" in text.lower()
            or "no file named" in text
        ):
            return True
        stack += [e.__cause__, e.__context__]
    return False


def hub_offline() -> bool:
    """Whether huggingface_hub is set to make no network calls (``HF_HUB_OFFLINE=1``, read when it is imported)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def missing_weights_error(
    what: str, source: str, *, hub_id: str | None, folder: str | Path | None, files: tuple[str, ...] = (),
    allow_download: bool = False,
) -> MissingWeightsError:
    """One sentence: which weights, what to download, where to put them (with ``allow_download``: why the
    download brought nothing, offline mode or no network, instead of advising a download)."""
    listed = f" ({', '.join(files)})" if files else ""
    if allow_download and hub_id:
        why = ("HF_HUB_OFFLINE=1 is set, so nothing was downloaded; unset it or" if hub_offline() else
               "the download from the Hugging Face hub failed (no network, or the repository is gated: accept its "
               "licence and `hf auth login`); connect or")
        command = f"`hf download {hub_id} --local-dir {folder}`" if folder else f"`hf download {hub_id}`"
        return MissingWeightsError(f"{what}: weights for hub repo {hub_id} are not in {folder or 'the Hugging Face cache'}"
                                   f" and allow_download=True brought none: {why} download them with "
                                   f"{command} on a machine with network access.")
    if hub_id and folder:
        fix = (
            f"download hub repo {hub_id}{listed} into {folder} with huggingface_hub's command "
            f"`hf download {hub_id} --local-dir {folder}` (or, from Python, load with allow_download=True "
            "on a machine with network access)"
        )
    elif hub_id:
        fix = (f"download hub repo {hub_id}{listed} with `hf download {hub_id}` (into the Hugging Face cache) "
               "or, from Python, load with allow_download=True on a machine with network access")
    else:
        fix = f"put the weights{listed} in {folder}"
    return MissingWeightsError(f"{what}: weights not found at {source}; {fix}.")
