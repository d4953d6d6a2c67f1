"""What every hub adapter shares: component loading/saving, offline errors, pixel/latent layouts.

A hub adapter wraps a set of *components*, each a diffusers/transformers object saved in its own
sub-folder (``vae/``, ``unet/``, ``transformer/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``,
...) exactly as the published diffusers repositories lay them out. So the same code loads

* a local folder (``~/.cache/vdm3d/models/<name>`` by default, see :mod:`vdm3d.models.registry`),
* a hub id (``stabilityai/stable-video-diffusion-img2vid-xt``) from the local hub cache, and
* a tiny random configuration that a test saved with :meth:`HubBackbone.save_pretrained`.

Offline by default: ``local_files_only=True`` unless ``allow_download=True``; when files are absent
the loader raises :class:`~vdm3d.errors.MissingWeightsError` with one sentence naming the hub repo and
the folder to put it in. Safetensors only: ``use_safetensors=True`` unless ``trust_pickle=True``; a
sub-folder that holds only pickle files (``*.bin``) raises :class:`~vdm3d.errors.UnsafeCheckpointError`.

The adapter's own settings (frame count, resolution, conditioning constants) are a frozen dataclass
saved beside the components as ``vdm3d_adapter.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pickle
import re
import sys
import warnings
from pathlib import Path
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.errors import ConfigError, InputError, MissingWeightsError, UnsafeCheckpointError
from vdm3d.models.batching import join_batch
from vdm3d.models.device import on_device_calls
from vdm3d.models.weights import CONVERT, TRUST_FLAG, is_missing_weights, missing_weights_error, warn_trusted_pickle

# diffusers' from_pretrained passes huggingface_hub an argument it deprecated; the warning would print
# before our one-sentence "weights not found" message and says nothing the user can act on.
warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)

ADAPTER_FILE = "vdm3d_adapter.json"
PEFT_ADAPTER_FILE = "adapter_config.json"
"""what a peft (LoRA) adapter's folder holds beside its weights, instead of a model's parts"""


@contextlib.contextmanager
def known_warnings_off():
    """Warnings of diffusers that say nothing a vdm3d user can act on: its own FLUX ControlNet builds the
    ``FluxPosEmbed`` it deprecated (printed on every FLUX load and again when the planner counts
    parameters)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*`FluxPosEmbed` is deprecated", category=FutureWarning)
        yield


@contextlib.contextmanager
def quiet_loading():
    """No progress bars or info lines from diffusers/transformers while weights load (transformers 5
    draws a "Loading weights" bar per model, and announces its PIL fallback when torchvision is absent):
    a load prints nothing, and a failed one prints only vdm3d's one sentence."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = [(lib, lib.is_progress_bar_enabled(), lib.get_verbosity())
             for lib in (diffusers_logging, transformers_logging)]
    for lib, _, _ in saved:
        lib.disable_progress_bar()
        # CRITICAL, not ERROR: diffusers logs "An error occurred while trying to fetch ..." at ERROR level
        # before raising the error that vdm3d turns into its own sentence
        lib.set_verbosity(50)
    try:
        with known_warnings_off():
            yield
    finally:
        for lib, bar, level in saved:
            if bar:
                lib.enable_progress_bar()
            lib.set_verbosity(level)


@dataclasses.dataclass(frozen=True)
class Component:
    """One sub-folder of a model repository: which class loads it and whether it must exist."""

    cls_path: str  # "diffusers.AutoencoderKL" or "vdm3d.models.hub.sv3d.SV3DUNet"
    required: bool = True
    accepts: tuple[str, ...] = ()
    """``_class_name`` values a saved diffusers config may carry besides the class's own name (a
    subclass loads its parent's configs: SV3DUNet takes ``UNetSpatioTemporalConditionModel``)"""

    def load_class(self):
        import importlib

        module, _, attr = self.cls_path.rpartition(".")
        return getattr(importlib.import_module(module), attr)


class HubBackbone:
    """Base of the hub adapters (implements the storage half of :class:`~vdm3d.protocols.Backbone`).

    Subclasses declare ``COMPONENTS`` (sub-folder -> :class:`Component`) and ``Settings`` (a frozen
    dataclass) and implement ``encode``/``decode``/``condition``/``denoise``, which take and return tensors on
    any device: each subclass's are wrapped (:func:`vdm3d.models.device.on_device_calls`) so that a job's CPU
    tensors go to the backbone's device and its results come back as CPU float32."""

    COMPONENTS: ClassVar[dict[str, Component]] = {}
    Settings: ClassVar[type] = type(None)

    name: str
    slots: frozenset[str]
    resolution: tuple[int, int]
    frames: int | None
    latent_channels: int
    spatial_factor: int
    temporal_factor: int
    prediction: str
    process: str
    per_element_sigma: bool = False
    source: str | None = None
    """the folder (or hub id) :meth:`from_pretrained` loaded from; None for a model built in memory"""
    hub_id: str | None = None
    """the repository the entry downloads from (None: a converted model)"""
    TEXT_REPO: ClassVar[str | None] = None
    """the published repository whose ``text_encoder/`` and ``tokenizer/`` this adapter's folders take"""
    NO_SCHEDULER: ClassVar[str | None] = None
    """what the adapter uses when the folder has no ``scheduler/`` (None: it reads no scheduler config)"""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        on_device_calls(cls)  # a job's CPU tensors cross to the backbone's device and back (--device cuda)

    def __init__(self, components: dict[str, Any], settings=None, *, name: str | None = None):
        missing = [k for k, c in self.COMPONENTS.items() if c.required and components.get(k) is None]
        if missing:
            raise ConfigError(
                f"{type(self).__name__}: components {missing} are required; build or load them."
            )
        unknown = set(components) - set(self.COMPONENTS)
        if unknown:
            raise ConfigError(
                f"{type(self).__name__}: unknown components {sorted(unknown)}; "
                f"expected some of {sorted(self.COMPONENTS)}."
            )
        self.components = {k: components.get(k) for k in self.COMPONENTS}
        for module in self.components.values():
            if isinstance(module, torch.nn.Module):
                module.eval().requires_grad_(False)
        self.settings = settings if settings is not None else self.Settings()
        self.name = name or type(self).__name__

    def __getattr__(self, key: str):
        # components are reachable as attributes: self.vae, self.unet, ...
        comps = self.__dict__.get("components")
        if comps is not None and key in comps:
            return comps[key]
        raise AttributeError(key)

    # ------------------------------------------------------------------ device / dtype
    @property
    def device(self) -> torch.device:
        if "execution_device" in self.__dict__:  # offloaded by the memory planner: where modules run
            return self.__dict__["execution_device"]
        for module in self.components.values():
            if isinstance(module, torch.nn.Module):
                return next(module.parameters()).device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for key in ("transformer", "unet"):
            module = self.components.get(key)
            if isinstance(module, torch.nn.Module):
                return next(module.parameters()).dtype
        return torch.float32

    def to(self, device=None, dtype: torch.dtype | None = None) -> "HubBackbone":
        for module in self.components.values():
            if not isinstance(module, torch.nn.Module):
                continue
            p = next(module.parameters(), None)
            if p is None or (
                (device is None or p.device == torch.device(device)) and (dtype is None or p.dtype == dtype)
            ):
                continue  # nothing to move (diffusers warns about casts even when they are no-ops)
            module.to(device=device, dtype=dtype)
        return self

    def missing_text(self, *pairs: tuple[str, str]) -> list[str]:
        """The sub-folders of ``(encoder, tokenizer)`` pairs that were not loaded (a text-free folder)."""
        return [k + "/" for pair in pairs for k in pair if self.components.get(k) is None]

    def refuse_prompt(self, prompt: str, missing: list[str], *, negative: bool = False) -> None:
        """A non-empty prompt for a folder without a text encoder is refused: the zero embedding that stands
        in for it would condition the model on no text at all, silently. An empty prompt passes."""
        if not missing or not prompt.strip():
            return
        where = self.source or f"{self.name}'s model folder"
        repo = self.hub_id or self.TEXT_REPO
        subs = " and ".join(missing) if len(missing) < 3 else ", ".join(missing[:-1]) + " and " + missing[-1]
        raise InputError(
            f"{where} has no {subs}, so {self.name} cannot read the {'negative ' if negative else ''}prompt "
            f"{prompt!r}; add the {subs} sub-folders of {'the repository ' + repo if repo else 'its repository'} "
            f"to {where}, or pass no {'negative ' if negative else ''}prompt."
        )

    def concat_conditions(self, conds: list[Any], batch: int) -> Any | None:
        """Encoded conditions joined on the batch axis, so the samplers run both CFG branches in one
        denoiser call (``None``: they differ in structure; the sampler then makes two calls)."""
        return join_batch(conds, batch)

    # ------------------------------------------------------------------ storage
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write every component (safetensors) and the adapter settings into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for key, module in self.components.items():
            if module is None:
                continue
            if hasattr(module, "save_pretrained"):
                kwargs = {"safe_serialization": True} if isinstance(module, torch.nn.Module) else {}
                module.save_pretrained(str(folder / key), **kwargs)
            elif hasattr(module, "save_config"):
                module.save_config(str(folder / key))
        meta = {
            "adapter": f"{type(self).__module__}.{type(self).__name__}",
            "name": self.name,
            "settings": dataclasses.asdict(self.settings),
        }
        (folder / ADAPTER_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        *,
        allow_download: bool = False,
        trust_pickle: bool = False,
        name: str | None = None,
        hub_id: str | None = None,
        folder: str | Path | None = None,
        files: tuple[str, ...] = (),
        device: str | torch.device = "cpu",
        torch_dtype: torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        **settings,
    ) -> "HubBackbone":
        """Load from a local folder or a hub id (offline unless ``allow_download``).

        ``hub_id``/``folder``/``files`` only shape the error message when weights are absent;
        ``cache_dir`` is the Hugging Face hub cache to read hub ids from (default: the standard one);
        ``settings`` override fields of the adapter's ``Settings``."""
        source_str = (
            str(Path(source).expanduser()) if Path(str(source)).expanduser().exists() else str(source)
        )
        local = Path(source_str).is_dir()
        what = name or cls.__name__

        def missing():
            return missing_weights_error(
                what,
                source_str,
                hub_id=hub_id or (None if local else source_str),
                folder=folder or (source_str if local else None),
                files=files,
                allow_download=allow_download,
            )

        if not local and (Path(str(source)).is_absolute() or str(source).startswith((".", "~"))):
            raise missing()
        stored: dict[str, Any] = {}
        meta_path = Path(source_str) / ADAPTER_FILE
        if local and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as e:
                raise InputError(f"{meta_path}: not valid JSON ({e}); delete it or re-save the model.") from e
            stored = dict(meta.get("settings", {}))
            name = name or meta.get("name")
        known = {f.name for f in dataclasses.fields(cls.Settings)}
        bad = set(settings) - known
        if bad:
            raise ConfigError(f"{cls.__name__}: unknown settings {sorted(bad)}; choose from {sorted(known)}.")
        stored = {k: v for k, v in stored.items() if k in known}
        stored.update(settings)
        stored = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}
        if local:  # every check that needs no weights, before any load
            _check_folder(cls, Path(source_str), what, hub_id=hub_id, trust_pickle=trust_pickle, home=folder)
            configs = {k: _read_config(Path(source_str) / k) or {} for k in cls.COMPONENTS}
            cls.check_configs(configs, stored, Path(source_str), what)
        components: dict[str, Any] = {}
        for key, comp in cls.COMPONENTS.items():
            sub = Path(source_str) / key
            if local and not sub.is_dir():
                continue  # optional (_check_folder refused a missing required one)
            with quiet_loading():
                components[key] = _load_component(
                    comp,
                    source_str,
                    key,
                    allow_download=allow_download,
                    trust_pickle=trust_pickle,
                    torch_dtype=torch_dtype,
                    missing=missing,
                    cache_dir=cache_dir,
                    variant=_variant(sub) if local else None,
                )
        if not local:  # a hub snapshot: the same checks on the loaded configs
            for key, module in components.items():
                _check_class(cls, key, module, Path(source_str) / key, what)
            cls.check_configs({k: _config_of(m) for k, m in components.items()}, stored, Path(source_str), what)
        for key, value in cls.settings_from_configs(components).items():
            stored.setdefault(key, value)  # vdm3d_adapter.json or the caller's settings win
        try:
            model = cls(components, cls.Settings(**stored), name=name)
        except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, IndexError) as e:
            raise _unreadable(Path(source_str), e, "the components could not be put together") from None
        model.source = source_str
        model.hub_id = hub_id or (None if local else source_str)
        if cls.NO_SCHEDULER and "scheduler" in cls.COMPONENTS and components.get("scheduler") is None:
            print(f"note: {Path(source_str) / 'scheduler'} is absent, so {model.name} uses {cls.NO_SCHEDULER}.",
                  file=sys.stderr, flush=True)
        return model.to(device)

    @classmethod
    def check_configs(cls, configs: dict[str, dict], settings: dict[str, Any], folder: Path, what: str) -> None:
        """Refuse (one sentence, :class:`InputError`) components whose saved configs are of the right class
        but not what this model needs (SV3D_p's camera width); ``settings``: the variant's settings."""

    @classmethod
    def settings_from_configs(cls, components: dict[str, Any]) -> dict[str, Any]:
        """Settings the folder's own configs fix (a text encoder's sequence length), used where neither
        ``vdm3d_adapter.json`` nor the caller set them: a published download has no adapter file."""
        return {}


class Tokenizer:
    """Loader for ``tokenizer/`` folders: ``AutoTokenizer`` first (the published repositories name
    their class), then the generic ``tokenizer.json`` reader, which needs no model config (transformers 5
    looks for one when the saved class is its generic ``TokenizersBackend``)."""

    @staticmethod
    def from_pretrained(source: str, **kwargs):
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        try:
            return AutoTokenizer.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as first:
            try:
                return PreTrainedTokenizerFast.from_pretrained(source, **kwargs)
            except (OSError, ValueError):
                raise first from None


def _pickles(sub: Path) -> list[Path]:
    return sorted(p for p in sub.iterdir()
                  if p.suffix in (".bin", ".ckpt", ".pt", ".pth") and not p.name.startswith("training_args"))


def _refuse_pickle_only(sub: Path) -> None:
    weights = list(sub.glob("*.safetensors"))
    pickles = _pickles(sub)
    if pickles and not weights:
        first = pickles[0]
        more = f" (and the same for its {len(pickles) - 1} other pickle file(s))" if len(pickles) > 1 else ""
        raise UnsafeCheckpointError(
            f"{first}: only pickle weights found in {sub.name}/, which can run code when loaded; if you trust "
            f"their source, convert them once with `{CONVERT} {first} {first.with_suffix('.safetensors')} "
            f"{TRUST_FLAG}`{more} and run again."
        )


_WEIGHT_NAME = re.compile(r"^(?:diffusion_pytorch_model|model)(?:\.(?P<variant>[A-Za-z0-9_]+))?(?:-\d{5}-of-\d{5})?$")


def _variants(sub: Path) -> set[str | None]:
    """The variants of the safetensors weights in ``sub`` (``None``: the plain files; ``"fp16"``:
    ``diffusion_pytorch_model.fp16.safetensors``, what ``hf download --include "*fp16*"`` brings)."""
    found: set[str | None] = set()
    for f in sub.glob("*.safetensors"):
        m = _WEIGHT_NAME.match(f.name[: -len(".safetensors")])
        found.add(m.group("variant") if m else None)
    return found


def _variant(sub: Path) -> str | None:
    """The variant to load when ``sub`` holds no plain weights (fp16 first), else None."""
    if not sub.is_dir():
        return None
    found = _variants(sub)
    if not found or None in found:
        return None
    return "fp16" if "fp16" in found else sorted(found)[0]


def _read_config(sub: Path) -> dict | None:
    path = sub / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _config_of(module) -> dict:
    cfg = getattr(module, "config", None)
    if cfg is None:
        return {}
    if hasattr(cfg, "to_dict"):  # transformers
        return cfg.to_dict()
    return dict(cfg)


def _builds_module(cls) -> bool:
    """Whether ``cls.from_pretrained`` builds a network from config + weights (diffusers' AutoModel
    does, without being one)."""
    return isinstance(cls, type) and (issubclass(cls, torch.nn.Module) or cls.__name__ == "AutoModel")


def _is_module(comp: Component) -> bool:
    return _builds_module(comp.load_class())


def _class_problem(comp: Component, cfg: dict) -> tuple[str, str] | None:
    """(what the config holds, what the component needs) when they differ, else None.

    diffusers configs name their class (``_class_name``); transformers configs name their family
    (``model_type``: a T5 encoder saved from ``T5ForConditionalGeneration`` still loads as
    ``T5EncoderModel``). Auto classes take anything."""
    cls = comp.load_class()
    if cls.__name__.startswith("Auto"):
        return None
    if "_class_name" in cfg:
        names = {cls.__name__, *comp.accepts}
        held = str(cfg["_class_name"])
        return None if held in names else (held, cls.__name__)
    want = getattr(getattr(cls, "config_class", None), "model_type", None)
    held = cfg.get("model_type")
    if want and held and held != want:
        archs = cfg.get("architectures") or []
        return (str(archs[0]) if archs else f"{held} model", cls.__name__)
    return None


def _check_class(cls, key: str, module, sub: Path, what: str) -> None:
    comp = cls.COMPONENTS[key]
    if module is None or not _is_module(comp):
        return
    problem = _class_problem(comp, _config_of(module))
    if problem:
        raise _wrong_class(sub, problem, what)


def _wrong_class(sub: Path, problem: tuple[str, str], what: str) -> InputError:
    held, want = problem
    return InputError(f"{sub} holds a {held}, not the {want} that {what} needs; put {what}'s own weights in "
                      f"{sub.parent} (`vdm3d models info {what}` names the repository) or give the folder of a "
                      f"{want} model.")


def _check_folder(cls, folder: Path, what: str, *, hub_id: str | None, trust_pickle: bool,
                  home: str | Path | None = None) -> None:
    """Before anything loads: the first of :func:`folder_problems`, raised."""
    problems = folder_problems(cls, folder, what, hub_id=hub_id, trust_pickle=trust_pickle, home=home)
    if problems:
        raise problems[0]
    if (folder / PEFT_ADAPTER_FILE).is_file():  # a model with an adapter beside it: the model loads, the adapter not
        print(f"warning: {folder / PEFT_ADAPTER_FILE}: a LoRA/peft adapter beside {what}'s weights is not loaded "
              "(vdm3d loads no adapters); merge it into the model first (peft's merge_and_unload, then "
              "save_pretrained) to use it.", file=sys.stderr, flush=True)


def folder_problems(cls, folder: Path, what: str, *, hub_id: str | None = None, trust_pickle: bool = False,
                    home: str | Path | None = None) -> list[Exception]:
    """Every problem a load of ``folder`` by adapter ``cls`` would meet, found without building a model: a
    required sub-folder absent or without config and weights, a ``config.json`` (or any other JSON file of a
    part) that does not parse, a config of another class or with a field of the wrong type, pickle-only weights
    (unless trusted), a safetensors file that is truncated or has no readable header. Each is one sentence
    naming the file (an exception to raise), in the order a load meets them; ``home``: the entry's own folder
    (where the fix puts ``what``'s weights when ``folder`` holds another model)."""
    required = [folder / key for key, comp in cls.COMPONENTS.items() if comp.required]
    adapter = peft_adapter_problem(folder, what, required, hub_id=hub_id, home=home)
    if adapter is not None:  # every part would be "missing", and the fix to download them into it, wrong
        return [adapter]
    problems: list[Exception] = []
    absent, empty = [], []
    for key, comp in cls.COMPONENTS.items():
        sub = folder / key
        if not sub.is_dir():
            if comp.required:
                absent.append(f"{key}/")
            continue
        unparsed = _json_problems(sub)
        problems += unparsed
        if unparsed:
            continue
        if not _is_module(comp):
            continue
        cfg = _read_config(sub)
        if cfg is None and (sub / PEFT_ADAPTER_FILE).is_file():  # a LoRA saved over a part: not "no config"
            fetch = f"`hf download {hub_id} --local-dir {folder}`" if hub_id else f"`vdm3d models info {what}`"
            problems.append(InputError(f"{sub} holds a LoRA/peft adapter ({PEFT_ADAPTER_FILE}) where {what}'s "
                                       f"{key} belongs, and vdm3d loads no adapters; put the model's own {key}/ "
                                       f"there ({fetch}), or the {key} with the adapter merged into it (peft's "
                                       "merge_and_unload, then save_pretrained)."))
            continue
        if cfg is None:
            if comp.required:
                empty.append(f"{key}/")
            continue
        problem = _class_problem(comp, cfg)
        if problem:
            problems.append(_wrong_class(sub, problem, what))
            continue
        problems += _value_problems(comp, cfg, sub)
        if not trust_pickle:
            try:
                _refuse_pickle_only(sub)
            except UnsafeCheckpointError as e:
                problems.append(e)
                continue
        if not _variants(sub) and not _pickles(sub) and not (sub / "diffusion_pytorch_model.safetensors.index.json").is_file():
            if comp.required:
                empty.append(f"{key}/")
            continue
        problems += [InputError(m) for f in sorted(sub.glob("*.safetensors")) if (m := safetensors_problem(f))]
    if absent or empty:
        problems.append(_missing_parts(cls, folder, what, absent, empty, hub_id=hub_id, home=home))
    return problems


def peft_adapter_problem(folder: Path, what: str, parts: list[Path], *, hub_id: str | None = None,
                         home: str | Path | None = None) -> InputError | None:
    """The refusal of a peft (LoRA) adapter's folder given as ``what``'s model folder: it holds an
    ``adapter_config.json`` and none of the model's ``parts`` (its required sub-folders, a transformers model's
    ``config.json``); None for any other folder. vdm3d loads no adapters, so the fix is the base model's folder
    (``home``, where ``what``'s weights go), or the adapter merged into it first; it is never to download the
    model into the adapter's folder, which the missing-parts sentence would have said."""
    config = folder / PEFT_ADAPTER_FILE
    if not config.is_file() or any(p.exists() for p in parts):
        return None
    try:
        base = json.loads(config.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        base = None
    of = f" of {base}" if isinstance(base, str) and base else ""
    fetch = f"`hf download {hub_id} --local-dir {{}}`" if hub_id else f"`vdm3d models info {what}` says how to get it"
    own = Path(home).expanduser() if home is not None else None
    merged = "the model with the adapter merged into it (peft's merge_and_unload, then save_pretrained)"
    if own is not None and own != folder:
        fix = (f"give the folder of {what} itself instead (its weights go in {own}: {fetch.format(own)}), or "
               f"the folder of {merged}")
    else:  # the default folder: the model goes there, the adapter out of it
        fix = f"move the adapter elsewhere and put {what}'s weights in {folder} ({fetch.format(folder)}), or {merged}"
    return InputError(f"{folder} holds a LoRA/peft adapter{of} ({PEFT_ADAPTER_FILE}), not a model, and vdm3d "
                      f"loads no adapters; {fix}.")


def _missing_parts(cls, folder: Path, what: str, absent: list[str], empty: list[str], *, hub_id: str | None,
                   home: str | Path | None) -> Exception:
    others = sorted(p.name + "/" for p in folder.iterdir()
                    if p.is_dir() and p.name not in cls.COMPONENTS and not p.name.startswith("."))
    fetch = f"`hf download {hub_id} --local-dir {{}}`" if hub_id else f"`vdm3d models info {what}` says how to make it"
    if absent and others:  # another kind of model: never tell the user to download into its folder
        label = _held_model(folder)
        parts = ", ".join(sorted(others + [p.name + "/" for p in folder.iterdir()
                                           if p.is_dir() and p.name in cls.COMPONENTS]))
        own = Path(home) if home is not None else None
        if own is not None and own.expanduser() != folder:
            fix = (f"give the folder of {what} instead (its weights go in {own}"
                   f"{': ' + fetch.format(own) if hub_id else '; ' + fetch})")
        else:
            fix = (f"move that model to its own folder and put {what}'s weights in {folder}"
                   f"{' (' + fetch.format(folder) + ')' if hub_id else ' (' + fetch + ')'}")
        return MissingWeightsError(f"{folder} holds {label} ({parts}), not {what}, which needs "
                                   f"{', '.join(absent)}; {fix}.")
    parts = []
    if absent:
        parts.append(f"{folder} exists but has no {', '.join(absent)}")
    if empty:
        parts.append(f"{'its' if absent else f'{folder} exists but its'} {', '.join(empty)} "
                     f"{'holds' if len(empty) == 1 else 'hold'} no config.json and weights")
    source = (f"download them from hub repo {hub_id} (`hf download {hub_id} --local-dir {folder}` fetches only "
              "what is missing)") if hub_id else f"put {what}'s complete folder there"
    return MissingWeightsError(f"{'; '.join(parts)}; {source}.")


def _held_model(folder: Path) -> str:
    """What another model's folder says it is: its vdm3d_adapter.json name, its model_index.json pipeline, or
    the class of its main part."""
    for path, field, say in ((folder / ADAPTER_FILE, "name", "the {} model"),
                             (folder / "model_index.json", "_class_name", "a {} folder")):
        try:
            value = json.loads(path.read_text()).get(field)
        except (OSError, ValueError, AttributeError):
            continue
        if value and value not in ("Pipeline", "DiffusionPipeline"):
            return say.format(value)
    for key in ("unet", "transformer", "vae"):
        try:
            value = json.loads((folder / key / "config.json").read_text()).get("_class_name")
        except (OSError, ValueError, AttributeError):
            continue
        if value:
            return f"a model with a {value}"
    return "another kind of model"


def _json_problems(sub: Path) -> list[Exception]:
    """The JSON files of a part that do not parse (``config.json``, ``scheduler_config.json``, tokenizer files)."""
    out: list[Exception] = []
    for path in sorted(sub.glob("*.json")):
        try:
            json.loads(path.read_text())
        except UnicodeDecodeError:
            out.append(InputError(f"{path} is not a text file, so it does not parse as JSON; download it again."))
        except ValueError as e:
            reason = getattr(e, "msg", str(e))
            where = f" (line {e.lineno}, column {e.colno}: {reason})" if isinstance(e, json.JSONDecodeError) else ""
            out.append(InputError(f"{path} is not valid JSON{where}; correct it or download it again."))
        except OSError as e:
            out.append(InputError(f"{path} cannot be read ({e.strerror or e}); check its permissions."))
    return out


def _value_problems(comp: Component, cfg: dict, sub: Path) -> list[Exception]:
    """Fields of a diffusers config whose type cannot be what the class takes: text where the class's default
    is a number or a flag (diffusers fails on them with its own unrelated text, "not all arguments
    converted during string formatting")."""
    import inspect

    if "_class_name" not in cfg:
        return []
    try:
        params = inspect.signature(comp.load_class().__init__).parameters
    except (TypeError, ValueError):
        return []
    out: list[Exception] = []
    for field, value in cfg.items():
        default = params[field].default if field in params else None
        if value is None:  # null: the published configs use it for "not set" (diffusers fills it in)
            continue
        if isinstance(default, bool):
            wrong, kind = not isinstance(value, bool), "true or false"
        elif isinstance(default, (int, float)):
            wrong, kind = isinstance(value, (str, dict, bool)), "a number" if isinstance(default, float) else "an integer"
        else:
            continue
        if wrong:
            out.append(InputError(f"{sub / 'config.json'}: {field} is {json.dumps(value)}, not {kind} (the class "
                                  f"default is {json.dumps(default)}); correct it or download the file again."))
    return out


def safetensors_problem(path: Path) -> str | None:
    """One sentence when ``path`` is not a whole safetensors file (truncated, or no readable header), else None;
    reads the header only."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 0 or n > size - 8:
                need = f"at least {8 + n}" if n >= 0 else "at least 8"
                return f"{path} is truncated ({size} of {need} bytes); download it again."
            header = json.loads(f.read(n))
    except OSError as e:
        return f"{path} cannot be read ({e.strerror or e}); check its permissions."
    except (ValueError, UnicodeDecodeError):
        return f"{path} is not a safetensors file (its header does not parse); download it again."
    if not isinstance(header, dict):
        return f"{path} is not a safetensors file (its header is not a table of tensors); download it again."
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return f"{path} is not a safetensors file (its header has no data offsets); download it again."
    if size < 8 + n + end:
        return f"{path} is truncated ({size} of {8 + n + end} bytes); download it again."
    return None


def _load_component(
    comp: Component,
    source: str,
    key: str,
    *,
    allow_download: bool,
    trust_pickle: bool,
    torch_dtype,
    missing,
    cache_dir=None,
    variant: str | None = None,
):
    cls = comp.load_class()
    kwargs: dict[str, Any] = {"subfolder": key, "local_files_only": not allow_download}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    is_module = _builds_module(cls)
    if is_module:
        kwargs["use_safetensors"] = None if trust_pickle else True
        if torch_dtype is not None:
            kwargs["torch_dtype"] = torch_dtype
        if variant is not None:  # only e.g. *.fp16.safetensors were downloaded: load them, in the dtype of the rest
            kwargs["variant"] = variant
            kwargs["torch_dtype"] = torch_dtype or torch.float32
    sub = Path(source) / key
    if is_module and trust_pickle and sub.is_dir() and not list(sub.glob("*.safetensors")):
        for pickle_file in _pickles(sub):  # about to be unpickled in full: say so, naming the file
            warn_trusted_pickle(pickle_file)
    try:
        loaded = cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError, EnvironmentError) as e:
        if is_missing_weights(e):
            if comp.required:
                raise missing() from e
            return None
        raise _unreadable(sub, e) from None
    except (RuntimeError, EOFError, KeyError, AttributeError, ImportError, pickle.UnpicklingError, TypeError,
            IndexError, ZeroDivisionError) as e:
        # a corrupt or foreign checkpoint (a config whose fields the class cannot build from): one sentence
        raise _unreadable(sub, e) from None
    if isinstance(loaded, torch.nn.Module):
        _own_memory(loaded)
    return loaded


_SHAPES = re.compile(r"(?P<param>[\w.]+) expected shape torch\.Size\(\[(?P<want>[\d, ]*)\]\), "
                     r"but got torch\.Size\(\[(?P<got>[\d, ]*)\]\)")


def _unreadable(sub: Path, e: BaseException, what: str = "the weights could not be loaded") -> InputError:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
    shapes = _SHAPES.search(reason)
    if shapes:  # diffusers' advice (ignore_mismatched_sizes) does not apply: config and weights disagree
        return InputError(
            f"{sub / 'config.json'} does not match the weights beside it: {shapes['param']} is "
            f"[{shapes['got']}] in the weights but the config builds [{shapes['want']}]; correct the config field "
            "that sets that size, or download config.json and the weights again."
        )
    if len(reason) > 300:  # cut at a word, never inside a path
        reason = reason[:300].rsplit(" ", 1)[0] + " ..."
    return InputError(f"{sub}: {what} ({type(e).__name__}: {reason}); "
                      "check the files or download them again.")


@torch.no_grad()
def _own_memory(module: torch.nn.Module) -> None:
    """Copy every parameter/buffer into freshly allocated memory.

    safetensors loads may leave tensors inside a memory-mapped file at offsets that are not 64-byte
    aligned; BLAS then takes a different (equally valid) summation path and outputs differ from the
    saved model in the last bit. Owning aligned copies makes save -> load reproduce outputs exactly and
    releases the file mapping."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        tensor.data = tensor.data.clone()


# ---------------------------------------------------------------------- layouts
def images_to_signed(images: Float[Tensor, "B F H W 3"]) -> Float[Tensor, "B F 3 H W"]:
    """[0, 1] channels-last frames to the [-1, 1] channels-first layout the VAEs take."""
    return images.permute(0, 1, 4, 2, 3) * 2.0 - 1.0


def signed_to_images(x: Float[Tensor, "B F 3 H W"]) -> Float[Tensor, "B F H W 3"]:
    return ((x.permute(0, 1, 3, 4, 2) + 1.0) * 0.5).clamp(0.0, 1.0)


def expand_sigma(sigma: Tensor | float, x: Float[Tensor, "B Fl C h w"]) -> Float[Tensor, "..."]:
    """``sigma`` as a 5-D tensor broadcastable to ``x``: ``[]``, ``[B]``, ``[B, Fl]`` or 5-D inputs."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.ndim == 1:
        return s.reshape(-1, 1, 1, 1, 1)
    if s.ndim == 2:
        return s.reshape(*s.shape, 1, 1, 1)
    if s.ndim == 5:
        return s
    raise ConfigError(
        f"sigma of shape {tuple(s.shape)} does not broadcast to latents {tuple(x.shape)}; "
        "give [B], [B, F] or [B, F, 1|C, h|1, w|1]."
    )


def uniform_sigma(sigma5: Tensor, x: Tensor, over: str, model: str) -> Tensor:
    """Reduce a 5-D ``sigma`` to one value per batch (``over="batch"``, shape ``[B]``) or per batch
    and latent frame (``over="frame"``, ``[B, Fl]``); the network takes no finer noise levels."""
    full = (
        sigma5.expand(x.shape[0], x.shape[1], 1, 1, 1)
        if sigma5.shape[2:] == (1, 1, 1)
        else sigma5.expand_as(x)
    )
    flat = full.flatten(1) if over == "batch" else full.flatten(2)
    ref = flat[..., :1]
    if not torch.allclose(flat, ref.expand_as(flat), rtol=1e-5, atol=1e-6):
        raise ConfigError(
            f"{model}: sigma varies within a {'sample' if over == 'batch' else 'frame'}, "
            f"which this network cannot take (per_element_sigma is False); give one sigma "
            f"per {'batch element' if over == 'batch' else 'frame'}."
        )
    return ref[..., 0]


def text_embeddings(
    tokenizer, encoder, prompts: list[str], max_length: int, device, what: str
) -> tuple[Tensor, Tensor | None]:
    """Token embeddings ``[B, L, D]`` and the pooled embedding (``None`` for T5-like encoders)."""
    if tokenizer is None or encoder is None:
        raise ConfigError(
            f"{what}: this model folder has no tokenizer/text_encoder, so it cannot take the "
            "text slot; load the full repository or give no text."
        )
    tokens = tokenizer(
        prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    )
    out = encoder(tokens.input_ids.to(device), output_hidden_states=False)
    pooled = getattr(out, "pooler_output", None)
    return out.last_hidden_state, pooled


TINY_WORDS = (
    "a",
    "an",
    "the",
    "house",
    "street",
    "orbit",
    "object",
    "red",
    "blue",
    "green",
    "chair",
    "table",
    "tree",
    "car",
    "of",
    "with",
    "in",
    "on",
    "view",
    "photo",
    "scene",
    "room",
    "dog",
    "cat",
    "sky",
)


def tiny_tokenizer(words: tuple[str, ...] = TINY_WORDS):
    """A word-level tokenizer built in memory (no download), for tiny text encoders in tests."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
