"""Backbones by name: the embedded tiny models and the hub adapters, with where their weights live.

A hub entry says which adapter loads it, its hub repository, the files that repository holds, and
the local folder the loader looks in first: ``$VDM3D_MODELS/<name>`` if the environment variable is
set, else ``models/<name>`` in the cache folder (:mod:`vdm3d.io.cache`; ``~/.cache/vdm3d`` by default). Loading is offline by default: a folder in diffusers
layout (``unet/``, ``vae/``, ...) is used when present, otherwise the hub id is looked up in the local
Hugging Face cache, and when neither holds the weights :func:`load_backbone` raises one sentence that
says what to download and where to put it. Entries without a diffusers repository (V3D, SV3D_u,
WorldWarp, the GGI checkpoint) name the original checkpoint and the conversion in their notes.

Tiny models come from :func:`vdm3d.models.tiny.available` (shipped safetensors with model cards) and
are listed as ``tiny-<name>``; the bare name works too.

Depth estimators (:mod:`vdm3d.models.depth`) are registered the same way: ``tiny-depth`` and the
transformers repositories in :data:`DEPTH` (Depth Anything V2, relative and metric), loaded by
:func:`load_depth` with the same offline rules and the same one-sentence missing-weights error.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

from vdm3d.errors import ConfigError, InputError, MissingWeightsError
from vdm3d.io.cache import cache_root, fingerprint_record, recorded_models  # noqa: F401 - re-exported

ENV_FOLDER = "VDM3D_MODELS"
TINY_PREFIX = "tiny-"


@dataclasses.dataclass(frozen=True)
class HubEntry:
    """One published model: what it is, which adapter loads it, and where its weights come from."""

    description: str
    adapter: str
    """import path of the :class:`~vdm3d.models.hub.base.HubBackbone` subclass"""
    hub_id: str | None
    """diffusers-layout repository on the Hugging Face hub (``None``: convert from ``notes``)"""
    files: tuple[str, ...]
    """sub-folders / files the loader reads from the repository"""
    settings: tuple[tuple[str, Any], ...] = ()
    """adapter settings of this variant (frames, resolution, conditioning constants)"""
    license: str = ""
    notes: str = ""
    skip: tuple[str, ...] = ()
    """files of the repository the loader never reads (single-file checkpoints beside the diffusers folders),
    left out of the download command"""
    gated: bool = False
    """the repository asks to accept its licence (and ``hf auth login``) before it downloads"""

    def adapter_class(self):
        module, _, attr = self.adapter.rpartition(".")
        return getattr(importlib.import_module(module), attr)


_SVD_FILES = ("unet/", "vae/", "image_encoder/", "scheduler/")
_T2V_FILES = ("transformer/", "vae/", "text_encoder/", "tokenizer/", "scheduler/")

HUB: dict[str, HubEntry] = {
    "svd": HubEntry(
        "Stable Video Diffusion img2vid: 14 frames at 576x1024 from one image (EDM, v-prediction)",
        "vdm3d.models.hub.svd.SVDBackbone",
        "stabilityai/stable-video-diffusion-img2vid",
        _SVD_FILES,
        (("frames", 14), ("height", 576), ("width", 1024)),
        "stable-video-diffusion-community",
        skip=("svd.safetensors", "svd_image_decoder.safetensors"),
        gated=True,
    ),
    "svd-xt": HubEntry(
        "Stable Video Diffusion img2vid-xt: 25 frames at 576x1024 from one image (EDM, v-prediction)",
        "vdm3d.models.hub.svd.SVDBackbone",
        "stabilityai/stable-video-diffusion-img2vid-xt",
        _SVD_FILES,
        (("frames", 25), ("height", 576), ("width", 1024)),
        "stable-video-diffusion-community",
        skip=("svd_xt.safetensors", "svd_xt_image_decoder.safetensors"),
        gated=True,
    ),
    "v3d": HubEntry(
        "V3D object orbits: an SVD fine-tune, 18 frames at 512x512, fps_id 1, motion bucket 300",
        "vdm3d.models.hub.svd.SVDBackbone",
        None,
        _SVD_FILES,
        (
            ("frames", 18),
            ("height", 512),
            ("width", 512),
            ("fps_id", 1),
            ("motion_bucket_id", 300),
            ("noise_aug_strength", 0.02),
            ("trained_orbit", "v3d"),
        ),
        "see heheyas/V3D",
        "weights are an sgm checkpoint (heheyas/V3D V3D.ckpt) fine-tuned from SVD-XT: download svd-xt, then "
        "`vdm3d models convert V3D.ckpt FOLDER --layout v3d --base SVD_XT_FOLDER --trust-pickle` writes the "
        "diffusers folder (unet/ converted, vae/ and image_encoder/ linked from SVD-XT)",
    ),
    "sv3d-p": HubEntry(
        "SV3D_p: 21-frame orbit at 576x576 from one image, per-frame polar/azimuth cameras",
        "vdm3d.models.hub.sv3d.SV3DBackbone",
        "chenguolin/sv3d-diffusers",
        _SVD_FILES,
        (("frames", 21), ("height", 576), ("width", 576)),
        "stable-video-diffusion / sv3d community",
        "a diffusers conversion of stabilityai/sv3d sv3d_p.safetensors (per-frame AutoencoderKL decoder)",
    ),
    "sv3d-u": HubEntry(
        "SV3D_u: 21-frame fixed-elevation orbit at 576x576 from one image (no camera input)",
        "vdm3d.models.hub.sv3d.SV3DBackbone",
        None,
        _SVD_FILES,
        (("frames", 21), ("height", 576), ("width", 576), ("trained_orbit", "sv3d-static")),
        "sv3d community",
        "convert stabilityai/sv3d sv3d_u.safetensors to the diffusers UNet layout "
        "(projection_class_embeddings_input_dim 256) and put unet/, vae/, image_encoder/ in the folder",
    ),
    "cogvideox-5b-i2v": HubEntry(
        "CogVideoX-5B image-to-video: 49 frames at 480x720 with a text prompt (VP, v-prediction)",
        "vdm3d.models.hub.cogvideox.CogVideoXBackbone",
        "THUDM/CogVideoX-5b-I2V",
        _T2V_FILES,
        (("frames", 49), ("height", 480), ("width", 720)),
        "CogVideoX license",
    ),
    "videofrom3d-ggi": HubEntry(
        "VideoFrom3D GGI: CogVideoX-5B-I2V widened to 48 input channels for HED edge videos (inbetweening)",
        "vdm3d.models.hub.cogvideox.CogVideoXBackbone",
        None,
        _T2V_FILES,
        (("frames", 49), ("height", 480), ("width", 720)),
        "CogVideoX license",
        "start from THUDM/CogVideoX-5b-I2V, widen the patch embedding (widen_patch_embed, 16 channels), "
        "merge the GGI checkpoint-1350 (Google Drive, see KIMGEONUNG/VideoFrom3D) and save it here",
    ),
    "wan2.1-t2v-1.3b": HubEntry(
        "Wan2.1 text-to-video 1.3B: 81 frames at 480x832, rectified flow, per-token timesteps",
        "vdm3d.models.hub.wan.WanBackbone",
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        _T2V_FILES,
        (("frames", 81), ("height", 480), ("width", 832)),
        "Apache-2.0",
    ),
    "worldwarp": HubEntry(
        "WorldWarp: Wan2.1-T2V-1.3B fine-tuned for per-token (spatio-temporal) noise, 81 frames at 480x720",
        "vdm3d.models.hub.wan.WanBackbone",
        None,
        _T2V_FILES,
        (("frames", 81), ("height", 480), ("width", 720)),
        "see imsuperkong/worldwarp",
        "download Wan-AI/Wan2.1-T2V-1.3B-Diffusers and imsuperkong/worldwarp worldwarp_latest.ckpt (a pickle), "
        "then `vdm3d models convert worldwarp_latest.ckpt FOLDER --layout worldwarp --base WAN_FOLDER "
        "--trust-pickle` writes the folder (transformer/ converted, the rest linked from Wan)",
    ),
    "flux-dev-controlnet-hed": HubEntry(
        "FLUX.1-dev with a HED ControlNet: anchor images from edge maps (rectified flow)",
        "vdm3d.models.hub.flux.FluxBackbone",
        "black-forest-labs/FLUX.1-dev",
        (
            "transformer/",
            "vae/",
            "text_encoder/",
            "tokenizer/",
            "text_encoder_2/",
            "tokenizer_2/",
            "scheduler/",
            "controlnet/",
        ),
        (("height", 1024), ("width", 1024), ("guidance", 4.0), ("control_weight", 0.8)),
        "FLUX.1-dev non-commercial",
        "controlnet/ is not in the FLUX repo: put a diffusers FLUX ControlNet there "
        "(e.g. XLabs-AI/flux-controlnet-hed-diffusers)",
        skip=("flux1-dev.safetensors", "ae.safetensors"),
        gated=True,
    ),
}


_DEPTH_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
_DEPTH_ADAPTER = "vdm3d.models.hub.depth.TransformersDepth"


def _depth_anything(size: str, license: str, metric: str = "") -> HubEntry:
    scene = {"": "", "indoor": "Metric-Indoor-", "outdoor": "Metric-Outdoor-"}[metric]
    what = ("relative disparity (affine-invariant)" if not metric else
            f"metric depth in metres ({metric}, up to {20 if metric == 'indoor' else 80} m)")
    return HubEntry(f"Depth Anything V2 {size}{' ' + metric if metric else ''}: {what}, transformers",
                    _DEPTH_ADAPTER, f"depth-anything/Depth-Anything-V2-{scene}{size}-hf", _DEPTH_FILES, (), license)


#: hub depth estimators (transformers repositories), beside ``tiny-depth``
DEPTH: dict[str, HubEntry] = {
    "depth-anything-v2-small": _depth_anything("Small", "Apache-2.0"),
    "depth-anything-v2-base": _depth_anything("Base", "CC-BY-NC-4.0"),
    "depth-anything-v2-large": _depth_anything("Large", "CC-BY-NC-4.0"),
    "depth-anything-v2-metric-indoor-small": _depth_anything("Small", "Apache-2.0", "indoor"),
    "depth-anything-v2-metric-outdoor-small": _depth_anything("Small", "Apache-2.0", "outdoor"),
}


def models_root() -> Path:
    """Where hub weights are looked for: ``$VDM3D_MODELS``, else ``models/`` in the cache folder
    (:func:`vdm3d.io.cache.cache_root`: ``$VDM3D_CACHE``, ``$XDG_CACHE_HOME/vdm3d`` or ``~/.cache/vdm3d``)."""
    env = os.environ.get(ENV_FOLDER)
    return Path(env).expanduser() if env else cache_root() / "models"


def default_folder(name: str) -> Path:
    return models_root() / name


def _tiny() -> dict[str, dict[str, Any]]:
    if importlib.util.find_spec("vdm3d.models.tiny") is None:
        return {}
    tiny = importlib.import_module("vdm3d.models.tiny")
    return tiny.available() if hasattr(tiny, "available") else {}


def names() -> list[str]:
    """Every known model name: tiny models first (the defaults), then hub backbones, then hub depth
    estimators."""
    return [TINY_PREFIX + n for n in _tiny()] + list(HUB) + list(DEPTH)


def depth_names() -> list[str]:
    """The depth estimators: the tiny ones (``tiny-depth``), then the hub ones."""
    return [TINY_PREFIX + n for n, card in _tiny().items() if card.get("kind") == "depth"] + list(DEPTH)


def _entry(key: str) -> HubEntry:
    return HUB[key] if key in HUB else DEPTH[key]


def model_files(*names: str | None, folders: dict[str, str | Path | None] | None = None) -> list[Path]:
    """The files among ``names`` for a run's manifest to hash: a tiny model's ``NAME.json`` and weights
    (a training run's, or the shipped ones: a retrain copied into the package does not change its version)
    with the VAE it decodes with, and for a hub model the fingerprint of the weights it will load
    (:func:`hub_fingerprint_file`), from ``folders[name]`` when the job was given a folder for it (like
    ``load_backbone``'s ``path``)."""
    from vdm3d.models.tiny import WEIGHTS_DIR

    folders = folders or {}
    found: list[Path] = []
    for name in (str(n) for n in names if n is not None):
        if name.endswith(".json"):
            found += _tiny_files(Path(name))
        elif name not in HUB and name not in DEPTH:
            try:
                kind, key = _resolve(name)
            except ConfigError:  # not a model name (the job refuses it where it loads it)
                continue
            if kind == "tiny":
                found += _tiny_files(WEIGHTS_DIR / f"{key}.json")
    hub = [hub_fingerprint_file(str(n), folders.get(str(n))) for n in names
           if n is not None and (str(n) in HUB or str(n) in DEPTH)]
    return list(dict.fromkeys(found)) + [f for f in hub if f is not None]


def _tiny_files(model_file: Path) -> list[Path]:
    """A tiny model file, its weights, and the VAE's files it decodes with (:func:`vdm3d.models.tiny.vae_file`)."""
    import json

    from vdm3d.models.tiny import vae_file

    out = [f for f in (model_file, model_file.with_suffix(".safetensors")) if f.is_file()]
    try:
        meta = json.loads(model_file.read_text())
    except (OSError, ValueError):
        return out
    if isinstance(meta, dict) and meta.get("vae"):
        vae = vae_file(model_file, meta)
        out += [f for f in (vae, vae.with_suffix(".safetensors")) if f.is_file() and f != model_file]
    return out


FINGERPRINT_BLOCKS = 16
"""blocks of 64 KiB read from each large weight file for its fingerprint (evenly spaced)"""
_WHOLE = 8 * 1024**2  # files up to this size are hashed whole (configs, tokenizers)


def weights_source(name: str) -> tuple[Path, str] | None:
    """Where :func:`load_backbone` / :func:`load_depth` will read ``name``'s weights without a path:
    (the folder, how to name it: the folder, or ``hub_id@snapshot`` in the Hugging Face cache), or None."""
    key = _resolve(name)[1]
    folder = default_folder(key)
    if folder.is_dir() and any(folder.iterdir()):
        return folder, str(folder)
    hub_id = _entry(key).hub_id
    hit = _hub_cached(hub_id, _marker(key))
    if hit is None:
        return None
    snapshot = Path(hit).parent
    return snapshot, f"{hub_id}@{snapshot.name}"


def _file_fingerprint(path: Path) -> dict[str, Any]:
    """SHA-256 of a small file; of a large one its size, its safetensors header (names, dtypes, shapes,
    offsets) and 16 blocks of its contents (a swapped fine-tune of the same shapes differs there), so a
    multi-GB download costs about 1 MB of reading."""
    import hashlib

    size = path.stat().st_size
    if size <= _WHOLE:
        return {"size": size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    out: dict[str, Any] = {"size": size}
    with open(path, "rb") as f:
        if path.suffix == ".safetensors":
            n = int.from_bytes(f.read(8), "little")
            if 0 < n < size:
                out["header_sha256"] = hashlib.sha256(f.read(n)).hexdigest()
        h, block = hashlib.sha256(), 1 << 16
        for k in range(FINGERPRINT_BLOCKS):
            f.seek(max(0, (size - block) * k // (FINGERPRINT_BLOCKS - 1)))
            h.update(f.read(block))
        out["sampled_sha256"] = h.hexdigest()
    return out


def hub_fingerprint(folder: Path) -> dict[str, Any]:
    """``relative path -> fingerprint`` of every file of a model folder (hidden ones aside: ``hf download``
    keeps its own metadata in ``.cache/``)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return {str(p.relative_to(folder)): _file_fingerprint(p) for p in files}


def fingerprint_dir() -> Path:
    return cache_root() / "fingerprints"


def hub_fingerprint_file(name: str, folder: str | Path | None = None) -> Path | None:
    """A small JSON naming where ``name``'s weights are loaded from and their fingerprint
    (:func:`hub_fingerprint`), written to :func:`fingerprint_dir` as ``NAME-<source hash>.json`` so that a
    run's manifest hashes it with its other inputs: a rerun (or a resume) with other weights in the same
    place sees that file change, weights from another place see another file. None when the weights are not
    there (the load then says so) or the cache cannot be written. ``folder``: the folder given for the
    model instead of its default place (a job's ``--anchor-path``)."""
    import hashlib

    if folder is not None:
        folder = Path(folder).expanduser()
        found = (folder, str(folder.resolve())) if folder.is_dir() else None
    else:
        found = weights_source(name)
    if found is None:
        return None
    folder, label = found
    key = _resolve(name)[1]
    record = {"model": key, "source": label, "files": hub_fingerprint(folder)}
    path = fingerprint_dir() / f"{key}-{hashlib.sha256(label.encode()).hexdigest()[:12]}.json"
    try:
        from vdm3d.io.runs import atomic_write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, record)
    except OSError:
        return None
    return path


def _resolve(name: str) -> tuple[Literal["tiny", "hub"], str]:
    if name in HUB or name in DEPTH:
        return "hub", name
    tiny = _tiny()
    bare = name[len(TINY_PREFIX) :] if name.startswith(TINY_PREFIX) else name
    if bare in tiny:
        return "tiny", bare
    if name == "tiny":  # a job's --backbone tiny: each job's own embedded model(s), not one model
        raise ConfigError("'tiny' (--backbone tiny) names each job's own embedded models, not one model: tiny-orbit "
                          "(object), tiny-explore and tiny-depth (explore), tiny-video (complete), "
                          "tiny-stylize_anchor and tiny-stylize_inbetween (stylize); name one of them.")
    raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(names())}.")


def _hub_cached(hub_id: str | None, marker: str = "model_index.json") -> str | None:
    """The path of ``marker`` in the newest cached snapshot of ``hub_id``, or None (not there)."""
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(hub_id, marker)
    except Exception:  # noqa: BLE001 - a broken cache holds nothing
        return None
    return hit if isinstance(hit, str) else None


def _marker(key: str) -> str:
    return "config.json" if key in DEPTH else "model_index.json"


def _is_model_folder(folder: Path, entry: HubEntry) -> bool:
    """Whether ``folder`` is laid out as one model (``model_index.json``, or the entry's sub-folders)."""
    if not folder.is_dir():
        return False
    subs = [f.rstrip("/") for f in entry.files if f.endswith("/")]
    return (folder / "model_index.json").is_file() or any((folder / s / "config.json").is_file() for s in subs)


def absent_parts(key: str, folder: Path) -> list[str]:
    """The parts a load of ``key`` from ``folder`` needs that are not there at all (``vae/``, or a depth
    estimator's ``model.safetensors``); quick: no file is read and no model class imported."""
    if key in DEPTH:
        return [f for f in ("config.json",) if not (folder / f).is_file()] + (
            [] if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")) else ["model.safetensors"])
    comps = HUB[key].adapter_class().COMPONENTS
    return [f"{k}/" for k, c in comps.items() if c.required and not (folder / k / "config.json").is_file()]


def installed(name: str) -> str | None:
    """Where the weights of ``name`` are found locally (a folder, the hub cache, the package), else None; a
    folder that lacks a required part says so ("incomplete (no vae/): FOLDER")."""
    kind, key = _resolve(name)
    if kind == "tiny":
        return "package"
    found = weights_source(key)
    if found is None:
        return None
    folder, label = found
    where = label if folder == default_folder(key) else f"hub cache ({_entry(key).hub_id})"
    missing = absent_parts(key, folder)
    if missing:
        return f"incomplete (no {', '.join(missing)}; `vdm3d models verify {key}` checks the rest): {where}"
    return where


def verify(name: str, path: str | Path | None = None) -> tuple[str, list[str]]:
    """Check the folder ``name`` would load from (``path``, else its default place) the way the loader does,
    without building the model: every required part present, every JSON file parses, configs of the right
    class and field types, no pickle-only weights, no truncated or unreadable safetensors file, the variant the
    entry expects. Returns (the folder or where it was looked for, one sentence per problem)."""
    from vdm3d.errors import Vdm3dError

    kind, key = _resolve(name)
    if kind == "tiny":
        return "package", []
    entry = _entry(key)
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            return str(folder), [f"{folder}: no such folder; give the folder that holds {', '.join(entry.files)}."]
        where = str(folder)
    else:
        found = weights_source(key)
        if found is None:
            fetch = (f"`hf download {entry.hub_id} --local-dir {default_folder(key)}`" if entry.hub_id
                     else f"see `vdm3d models info {key}`")
            return str(default_folder(key)), [
                f"{key}: weights not found in {default_folder(key)}"
                f"{' nor in the Hugging Face cache' if entry.hub_id else ''}; {fetch} puts them there."]
        folder, where = found
    if key in DEPTH:
        from vdm3d.models.hub.base import _json_problems, _refuse_pickle_only, peft_adapter_problem, safetensors_problem

        adapter = peft_adapter_problem(folder, key, [folder / "config.json"], hub_id=entry.hub_id,
                                       home=default_folder(key))
        if adapter is not None:
            return where, [str(adapter)]
        problems: list[str] = [f"{folder} has no {p}; download it again." for p in absent_parts(key, folder)]
        problems += [str(e) for e in _json_problems(folder)]
        try:
            _refuse_pickle_only(folder)
        except Vdm3dError as e:
            problems.append(str(e))
        problems += [m for f in sorted(folder.glob("*.safetensors")) if (m := safetensors_problem(f))]
        return where, problems
    import json

    from vdm3d.models.hub.base import ADAPTER_FILE, _read_config, folder_problems

    cls = entry.adapter_class()
    problems = [str(e) for e in folder_problems(cls, folder, key, hub_id=entry.hub_id, home=default_folder(key))]
    adapter = folder / ADAPTER_FILE
    if adapter.is_file():
        try:
            json.loads(adapter.read_text())
        except ValueError as e:
            problems.append(f"{adapter}: not valid JSON ({e}); delete it or re-save the model.")
    if not problems:
        settings = dict(entry.settings)
        defaults = {f.name: f.default for f in dataclasses.fields(cls.Settings)}
        try:
            if "trained_orbit" in defaults:
                settings.setdefault("trained_orbit", defaults["trained_orbit"])
                _check_variant(folder, key, entry, settings["trained_orbit"])
            cls.check_configs({k: _read_config(folder / k) or {} for k in cls.COMPONENTS}, settings, folder, key)
        except Vdm3dError as e:
            problems.append(str(e))
    return where, problems


def info(name: str) -> dict[str, Any]:
    """The model card of ``name``: description, process, slots, where its weights are or would go."""
    kind, key = _resolve(name)
    if kind == "tiny":
        card = dict(_tiny()[key])
        return {
            "name": TINY_PREFIX + key,
            "kind": "tiny",
            "model": card.pop("kind", key),
            "installed": "package",
            **card,
        }
    entry = _entry(key)
    folder = default_folder(key)
    if key in DEPTH:
        model = {"task": "depth estimation"}
    else:
        cls = entry.adapter_class()
        model = {"process": f"{cls.process} / {cls.prediction}-prediction",
                 "per_element_sigma": cls.per_element_sigma}
    card = {
        "name": key,
        "kind": "hub",
        "description": entry.description,
        "adapter": entry.adapter,
        **model,
        "hub_id": entry.hub_id or "(none: convert, see notes)",
        "folder": str(folder),
        "files": ", ".join(entry.files),
        "settings": dict(entry.settings),
        "license": entry.license,
        "installed": installed(key) or "no",
    }
    if entry.hub_id:
        skip = "".join(f" --exclude {f}" for f in entry.skip)  # single-file copies of what the folders hold
        card["download"] = f"hf download {entry.hub_id} --local-dir {folder}{skip}"  # huggingface_hub's CLI
        if entry.gated:
            card["download"] += (f" (a gated repository: accept its licence on https://huggingface.co/{entry.hub_id} "
                                 "and run `hf auth login` first)")
    if entry.notes:
        card["notes"] = entry.notes
    return card


def load_backbone(
    name: str,
    path: str | Path | None = None,
    *,
    allow_download: bool = False,
    trust_pickle: bool = False,
    device: str | None = None,
    memory: str | None = None,
    plan_size: int | tuple[int, int] | None = None,
    plan_frames: int | None = None,
    **settings,
):
    """Load a backbone by name (tiny or hub). ``path`` overrides the default folder; ``settings``
    override the adapter settings of the entry (e.g. ``frames=14``). ``device`` (None: a tiny model on the
    CPU, a hub one where the job's ``--device`` put it, :mod:`vdm3d.models.device`, in that device's
    precision; either way the backbone takes and gives CPU float32). A hub backbone is then fitted to
    ``memory`` (``"24GB"``, ``"auto"``; default: what the job's ``--memory`` configured, else nothing)
    by :mod:`vdm3d.models.hub.memory` (a tiny one is only reported as needing no plan), for the size the
    job runs it at: ``plan_size`` ``(height, width)`` or the longest side, ``plan_frames`` (None: the model's
    native resolution and clip length)."""
    from vdm3d.models.device import note_on_cpu
    from vdm3d.models.hub.memory import note_embedded, plan_loaded

    if str(name).endswith(".json"):  # a model file that `vdm3d train` wrote
        from vdm3d.models.tiny import load_tiny_file

        model = note_embedded(load_tiny_file(name, device=device or "cpu"), memory)
        return note_on_cpu(model) if device is None else model
    kind, key = _resolve(name)
    if kind == "tiny":
        from vdm3d.models.tiny import load_tiny

        model = note_embedded(load_tiny(key, device=device or "cpu"), memory)
        return note_on_cpu(model) if device is None else model
    if key in DEPTH:
        raise ConfigError(f"{key!r} is a depth estimator, not a video backbone; choose one of: "
                          f"{', '.join(n for n in names() if n not in depth_names())}.")
    from vdm3d.models.device import configured_device, model_dtype, parse_device

    where = parse_device(device, "device") if device is not None else configured_device()
    # read into CPU memory in the device's precision, planned, and only then moved: a model that fits the GPU
    # only offloaded must not be put there whole first
    backbone = _load_hub(HUB[key], key, path, allow_download=allow_download, trust_pickle=trust_pickle,
                         device="cpu", torch_dtype=model_dtype(where), **settings)
    backbone = plan_loaded(backbone, memory, where, size=plan_size, frames=plan_frames)
    if "execution_device" not in backbone.__dict__:  # offloaded modules are moved by their hooks
        backbone.to(where)
    return backbone


def load_depth(name: str, path: str | Path | None = None, *, allow_download: bool = False,
               trust_pickle: bool = False, device: str = "cpu", **settings):
    """Load a depth estimator (:class:`~vdm3d.models.depth.DepthEstimator`) by name: ``tiny-depth``, an
    entry of :data:`DEPTH`, or the ``.json`` model file of a `vdm3d train depth` run (as every backbone flag
    takes one, :func:`load_backbone`). ``path`` overrides the default folder of a hub estimator.

    Raises:
        ConfigError: an unknown name, or a model file of another kind than a depth network.
        InputError: the model file does not exist."""
    if str(name).endswith(".json"):  # a model file that `vdm3d train depth` wrote
        from vdm3d.models.tiny import load_tiny_file
        from vdm3d.models.tiny.checkpoint import read_meta

        kind = read_meta(name)["kind"] if Path(name).is_file() else "depth"  # missing: load_tiny_file says so
        if kind != "depth":
            raise ConfigError(f"{name}: is a tiny {kind!r} model, not a depth estimator; give the .json that "
                              f"`vdm3d train depth` wrote or one of: {', '.join(depth_names())}.")
        return load_tiny_file(name, device=device)
    choices = depth_names()
    bare = name[len(TINY_PREFIX):] if name.startswith(TINY_PREFIX) else name
    if name not in choices and TINY_PREFIX + bare not in choices:
        raise ConfigError(f"unknown depth estimator {name!r}; choose one of: {', '.join(choices)}, "
                          "or the .json model file of a `vdm3d train depth` run.")
    if name not in DEPTH:
        from vdm3d.models.tiny import load_tiny

        return load_tiny(bare, device=device)
    return _load_hub(DEPTH[name], name, path, allow_download=allow_download, trust_pickle=trust_pickle,
                     device=device, **settings)


def _check_variant(folder: Path, key: str, entry: HubEntry, expected: str | None) -> None:
    """Refuse a folder whose ``vdm3d_adapter.json`` says it is another variant of the same adapter (SV3D_u's
    fixed orbit in the sv3d-p slot): its settings would otherwise replace the entry's, the width checks would
    test the wrong variant, and the run would record ``key`` for another model."""
    import json

    from vdm3d.models.hub.base import ADAPTER_FILE

    try:
        meta = json.loads((folder / ADAPTER_FILE).read_text())
    except (OSError, ValueError):
        return  # no adapter file (a download), or a broken one: from_pretrained says so
    stored = meta.get("settings") if isinstance(meta, dict) else None
    if not isinstance(stored, dict) or "trained_orbit" not in stored or stored["trained_orbit"] == expected:
        return
    held = stored["trained_orbit"]
    others = [n for n, e in HUB.items() if n != key and e.adapter == entry.adapter
              and dict(e.settings).get("trained_orbit") == held]
    saved_as = meta.get("name")
    if saved_as in others:  # the entry it was saved as, first
        others.insert(0, others.pop(others.index(saved_as)))
    label = saved_as if saved_as in HUB and saved_as != key else (others[0] if others else "another variant")

    def orbit(value: str | None) -> str:
        return f"trained on the {value} orbit" if value else "with no trained orbit"

    where = (f"use it as {others[0]} (put it in {default_folder(others[0])}) or " if others else "")
    raise InputError(
        f"{folder} holds {label}, {orbit(held)} (its {ADAPTER_FILE} says so), not {key}, which "
        f"{'is trained on the ' + expected + ' orbit' if expected else 'has no trained orbit'}; "
        f"{where}put {key}'s own weights in {folder}."
    )


def _load_hub(entry: HubEntry, key: str, path: str | Path | None, *, allow_download: bool, trust_pickle: bool,
              device, torch_dtype=None, **settings):
    folder = default_folder(key)
    if path is not None:
        source: str | Path = Path(path).expanduser()
        if not Path(source).is_dir():
            raise MissingWeightsError(
                f"{source}: model folder for {key!r} not found; give the folder that holds "
                f"{', '.join(entry.files)} or omit the path to use {folder}."
            )
    elif folder.is_dir() and any(folder.iterdir()):
        source = folder
    elif _is_model_folder(models_root(), entry) and not _hub_cached(entry.hub_id, _marker(key)):
        root = models_root()
        raise MissingWeightsError(
            f"${ENV_FOLDER} is {root}, which is itself a model folder, not the folder that holds one folder per "
            f"model; set {ENV_FOLDER}={root.parent if root.name == key else '<the folder above it>'} so that "
            f"{key}'s weights are found in {root.parent / key if root.name == key else '<that folder>/' + key}."
        )
    elif entry.hub_id:
        source = entry.hub_id
    else:
        raise MissingWeightsError(
            f"{key}: weights not found in {folder} and there is no diffusers repository to "
            f"fetch; {entry.notes}."
        )
    merged = {**dict(entry.settings), **settings}
    cls = entry.adapter_class()
    settings_cls = getattr(cls, "Settings", None)
    defaults = ({f.name: f.default for f in dataclasses.fields(settings_cls)}
                if dataclasses.is_dataclass(settings_cls) else {})
    if "trained_orbit" in defaults:  # the entry says which variant this is; a folder's vdm3d_adapter.json does not
        merged.setdefault("trained_orbit", defaults["trained_orbit"])
        if Path(source).is_dir():
            _check_variant(Path(source), key, entry, merged["trained_orbit"])
    try:
        return cls.from_pretrained(
            source,
            allow_download=allow_download,
            trust_pickle=trust_pickle,
            name=key,
            hub_id=entry.hub_id,
            folder=folder,
            files=entry.files,
            device=device,
            **({"torch_dtype": torch_dtype} if torch_dtype is not None else {}),  # a depth model takes none
            **merged,
        )
    except MissingWeightsError as e:
        if not entry.notes:
            raise
        # the entry's notes say what the download alone does not bring (FLUX's controlnet/), as `models info` does
        raise MissingWeightsError(f"{str(e).rstrip('.')}; note: {entry.notes}.") from e
