"""A memory planner for hub backbones: estimate the peak, pick the cheapest options that fit a budget.

``vdm3d object|explore|complete|stylize ... --memory 24GB`` (default: the device's free memory,
``torch.cuda.mem_get_info`` on CUDA, psutil's available memory on CPU) plans every hub backbone the
job loads and prints the plan as a table (option, estimated peak). The options, from the least to the
most slow-down:

==================  =================================================================================
``chunk``           feed-forward chunking: the UNet's ``enable_forward_chunking`` (one batch*frame at
                    a time), a token-chunked forward on every diffusers ``FeedForward`` of a
                    transformer (CogVideoX, Wan, FLUX; exact: the layer works token by token)
``vae-slicing``     decode one frame (SVD: ``decode_chunk=1``) or one sample at a time (``enable_slicing``)
``vae-tiling``      decode in spatial tiles (``enable_tiling``; not offered by SVD's temporal decoder)
``model-offload``   components live in host memory and move to the device while they run (accelerate's
                    ``cpu_offload_with_hook``, what diffusers' ``enable_model_cpu_offload`` uses)
``seq-offload``     every leaf module moves to the device for its own forward (accelerate's
                    ``cpu_offload``, diffusers' ``enable_sequential_cpu_offload``)
==================  =================================================================================

The offloads only help on an accelerator (on CPU the weights stay in the same memory), so the CPU
plans never choose them.

**The estimate** (:func:`estimate`) is analytic, from the model configs, the dtype and the workload
(frames, resolution, batch 2 for classifier-free guidance):

* weights: the parameter count of each component, counted on the ``meta`` device from its config
  (:func:`parameter_count`), times the dtype size; on the device all of them (no offload), the
  largest component (model offload) or the largest leaf module (sequential offload);
* the denoiser's activations, from its token count ``L`` (latent frames x latent pixels / patch) and
  width ``d``: the live residual stream ``4 B L d`` plus the transient attention projections
  ``4 B L d`` (attention runs through SDPA, whose CPU and CUDA kernels do not materialise the
  ``L x L`` scores) plus the feed-forward's inner activations ``2 B L d_ff`` (divided by the chunk
  count with ``chunk``); a UNet adds its skip connections per level;
* the VAE decoder's activations: ``6 x`` the largest decoder feature map (channels x pixels) per frame
  decoded at once, per tile with tiling.

The absolute numbers are rough (they were never checked against a full-size model: no GPU was lent
to this work); what the tests check is that each option is applied to the modules and that the
estimate orders plans like the measured CPU peak of tiny configurations (:func:`measure_peak`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
from typing import Any, Callable, Literal

import torch

from vdm3d.errors import ConfigError, format_bytes

GB = 1024**3
Offload = Literal["none", "model", "sequential"]
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": GB, "gb": GB, "gib": GB, "t": 1024**4, "tb": 1024**4, "tib": 1024**4}
FF_CHUNKS = 8
"""token chunks of a transformer's feed-forward under ``chunk``"""


MIN_BUDGET = 256 * 1024**2
"""the smallest ``--memory`` the command line takes: less is a typo (``1KB``), not a device"""


def parse_memory(text: str | int | float, flag: str = "--memory", minimum: int = MIN_BUDGET) -> int:
    """``"24GB"``, ``"24 GiB"``, ``"512MB"``, ``"1.5g"`` or a byte count -> bytes (GB means GiB here,
    as the memory of GPUs is quoted); under ``minimum`` (256 MiB unless given) is refused. The planner
    takes smaller budgets from Python (``load_backbone(memory="1MB")``: the most frugal plan)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise ConfigError(f"{flag} {text!r} is not an amount of memory; write it like 24GB, 16GiB or 512MB.")
    amount = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if amount < minimum:
        said = (f"{amount / 1024**2:.1f} MiB" if amount >= 1024**2 else
                f"{amount / 1024:.1f} KiB" if amount >= 1024 else f"{amount} bytes")
        raise ConfigError(f"{flag} {text!r} is {said}, less than the {minimum / 1024**2:g} MiB any "
                          "plan needs; give the device's memory, like 24GB (or leave --memory out: its free memory).")
    return amount


def available_memory(device: str | torch.device = "cpu") -> int:
    """Free memory of ``device``: ``torch.cuda.mem_get_info`` on CUDA, psutil's available RAM on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


# ---------------------------------------------------------------------- model footprint
def parameter_count(module: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, the largest leaf's own parameters) of ``module``, counted on a ``meta``
    instance built from its config (so the numbers come from the config, and cost no memory)."""
    from accelerate import init_empty_weights

    from vdm3d.models.hub.base import known_warnings_off

    cls, config = type(module), getattr(module, "config", None)
    meta = None
    if config is not None:
        with init_empty_weights(), known_warnings_off():
            meta = cls._from_config(config) if hasattr(cls, "_from_config") else cls.from_config(config)
    meta = meta if meta is not None else module
    # transformers ties shared embeddings (T5's encoder.embed_tokens is shared) only when loading
    tied = getattr(meta, "_tied_weights_keys", None) if getattr(config, "tie_word_embeddings", False) else None
    tied = set(tied) if isinstance(tied, dict) else set()
    total = sum(p.numel() for n, p in meta.named_parameters() if n not in tied)
    leaf = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in meta.modules()), default=0)
    return total, leaf


@dataclasses.dataclass(frozen=True)
class Workload:
    """What one denoiser call and one decode process."""

    frames: int  # video frames (1 for an image model)
    height: int
    width: int
    batch: int = 2  # classifier-free guidance runs both branches in one call
    dtype_bytes: int = 4


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which options to set on a backbone (the table in the module docstring)."""

    offload: Offload = "none"
    vae_slicing: bool = False
    vae_tiling: bool = False
    chunk: bool = False
    tile: int | None = None
    """tile size in pixels for ``vae_tiling`` (None: 512, or the VAE's own when it sets one)"""

    @property
    def label(self) -> str:
        parts = [n for n, on in (("chunk", self.chunk), ("vae-slicing", self.vae_slicing),
                                 ("vae-tiling", self.vae_tiling)) if on]
        if self.offload != "none":
            parts.append("model-offload" if self.offload == "model" else "seq-offload")
        return " + ".join(parts) or "none"


@dataclasses.dataclass(frozen=True)
class Estimate:
    weights: int  # resident on the device at the peak
    denoiser: int  # activations of one denoiser call
    vae: int  # activations of one decode
    peak: int


def _denoiser(backbone) -> tuple[str, torch.nn.Module]:
    for key in ("unet", "transformer"):
        m = backbone.components.get(key)
        if isinstance(m, torch.nn.Module):
            return key, m
    raise ConfigError(f"{backbone.name}: no unet/transformer component to plan memory for.")


def _latent_grid(backbone, work: Workload) -> tuple[int, int, int]:
    sf, tf = backbone.spatial_factor, getattr(backbone, "temporal_factor", 1)
    frames = max(1, work.frames)
    fl = (frames - 1) // tf + 1 if tf > 1 else frames
    return fl, max(1, work.height // sf), max(1, work.width // sf)


def denoiser_activations(backbone, work: Workload, plan: Plan) -> int:
    key, net = _denoiser(backbone)
    cfg, b, B = net.config, work.dtype_bytes, work.batch
    fl, h, w = _latent_grid(backbone, work)
    if key == "unet":
        chans = list(cfg.block_out_channels)
        layers = int(cfg.layers_per_block) if isinstance(cfg.layers_per_block, int) else int(cfg.layers_per_block[0])
        skips = sum((layers + 1) * B * fl * (h >> i) * (w >> i) * c for i, c in enumerate(chans))
        L, d = fl * h * w, chans[0]
        ff = 2 * B * L * 8 * d  # GEGLU projection (2 x 4d) and its product
        if plan.chunk:
            ff //= B * fl  # enable_forward_chunking(1, dim=0): one batch*frame at a time
        return b * (skips + 4 * B * L * d + 4 * B * L * d + ff)
    patch = cfg.get("patch_size", 1)
    pt, ph, pw = (patch if isinstance(patch, (tuple, list)) else (cfg.get("patch_size_t") or 1, patch, patch))
    if "Flux" in type(net).__name__:
        ph = pw = 2  # the adapter packs 2x2 latent pixels per token
    heads = int(cfg.num_attention_heads)
    d = heads * int(cfg.attention_head_dim)
    d_ff = int(cfg.get("ffn_dim") or 4 * d)
    text = int(cfg.get("max_text_seq_length") or getattr(backbone.settings, "max_text_tokens", 0) or 0)
    L = math.ceil(fl / pt) * math.ceil(h / ph) * math.ceil(w / pw) + text
    ff = 2 * B * L * d_ff
    if plan.chunk:
        ff = math.ceil(ff / FF_CHUNKS)
    return b * (4 * B * L * d + 4 * B * L * d + ff)


def vae_activations(backbone, work: Workload, plan: Plan) -> int:
    vae = backbone.components.get("vae")
    cfg = vae.config
    chans = list(cfg.get("block_out_channels") or [int(cfg.base_dim) * m for m in cfg.dim_mult])
    H, W = work.height, work.width
    if plan.vae_tiling and supports(backbone, "vae-tiling"):
        t = _tile(vae, plan)
        H, W = min(H, t[0]), min(W, t[1])
    per_frame = max(c * (H >> i) * (W >> i) for i, c in enumerate(chans))
    frames = max(1, work.frames)
    tf = getattr(backbone, "temporal_factor", 1)
    if "decode_chunk" in {f.name for f in dataclasses.fields(backbone.settings)}:
        at_once = 1 if plan.vae_slicing else min(frames, backbone.settings.decode_chunk)
    elif tf > 1:  # causal video VAEs decode a few latent frames at a time with a cache
        at_once = 2 * tf
    else:  # images (FLUX): all frames are one batch unless sliced
        at_once = 1 if plan.vae_slicing else frames
    return work.dtype_bytes * 6 * per_frame * at_once


def _tile(vae, plan: Plan) -> tuple[int, int]:
    if plan.tile is not None:
        return plan.tile, plan.tile
    h = getattr(vae, "tile_sample_min_height", None)
    w = getattr(vae, "tile_sample_min_width", None)
    return (int(h), int(w)) if h and w else (512, 512)


def component_weights(backbone, dtype_bytes: int) -> dict[str, tuple[int, int]]:
    """Per component: (bytes of all its parameters, bytes of its largest leaf module)."""
    out = {}
    for key, m in backbone.components.items():
        if isinstance(m, torch.nn.Module):
            total, leaf = parameter_count(m)
            out[key] = (total * dtype_bytes, leaf * dtype_bytes)
    return out


def estimate(backbone, work: Workload, plan: Plan, device: str | torch.device = "cpu",
             weights: dict[str, tuple[int, int]] | None = None) -> Estimate:
    """The peak memory of one denoiser call or one decode (whichever is larger) under ``plan``, on
    ``device``'s kind of memory (the offloads only lower the estimate for an accelerator).
    ``weights``: :func:`component_weights` when already counted."""
    weights = weights or component_weights(backbone, work.dtype_bytes)
    den_key, _ = _denoiser(backbone)
    act_d, act_v = denoiser_activations(backbone, work, plan), vae_activations(backbone, work, plan)
    total = sum(t for t, _ in weights.values())
    if torch.device(device).type == "cpu" or plan.offload == "none":
        peak = total + max(act_d, act_v)
        resident = total
    elif plan.offload == "model":  # one component on the device at a time
        extra = sum(t for k, (t, _) in weights.items() if k == "controlnet")  # runs beside the transformer
        stage_d, stage_v = weights[den_key][0] + extra + act_d, weights["vae"][0] + act_v
        resident = max(weights[den_key][0] + extra, weights["vae"][0])
        peak = max(stage_d, stage_v, *(t for t, _ in weights.values()))
    else:  # sequential: one leaf's weights at a time
        resident = max(leaf for _, leaf in weights.values())
        peak = resident + max(act_d, act_v)
    return Estimate(resident, act_d, act_v, peak)


# ---------------------------------------------------------------------- choosing and applying
def supports(backbone, option: str) -> bool:
    vae = backbone.components.get("vae")
    if option == "vae-tiling":
        return hasattr(vae, "use_tiling")  # diffusers' VAEs that implement tiling set this attribute
    if option == "vae-slicing":
        return hasattr(vae, "use_slicing") or "decode_chunk" in {f.name for f in dataclasses.fields(backbone.settings)}
    return True


def candidate_plans(backbone, device: str | torch.device = "cpu", tile: int | None = None) -> list[Plan]:
    """Plans from the fastest to the most frugal; offloads only for an accelerator."""
    tiling = supports(backbone, "vae-tiling")
    plans = [Plan(tile=tile), Plan(chunk=True, tile=tile), Plan(chunk=True, vae_slicing=True, tile=tile)]
    if tiling:
        plans.append(Plan(chunk=True, vae_slicing=True, vae_tiling=True, tile=tile))
    if torch.device(device).type != "cpu":
        last = plans[-1]
        plans += [dataclasses.replace(last, offload="model"), dataclasses.replace(last, offload="sequential")]
    return plans


@dataclasses.dataclass(frozen=True)
class Choice:
    plan: Plan
    budget: int
    rows: tuple[tuple[Plan, Estimate], ...]

    @property
    def fits(self) -> bool:
        return dict(self.rows)[self.plan].peak <= self.budget

    def table(self, name: str = "", work: Workload | None = None) -> str:
        width = max(len(p.label) for p, _ in self.rows)
        # height x width, as the registry and `models info` write sizes (480x720 is CogVideoX's landscape frame)
        size = (f" at {work.frames} frame{'s' if work.frames != 1 else ''} of {work.height}x{work.width} (HxW)"
                if work else "")
        lines = [f"memory plan{' for ' + name if name else ''}{size} (budget {format_bytes(self.budget)}):",
                 f"  {'option'.ljust(width)}  estimated peak"]
        for p, e in self.rows:
            mark = "  <- chosen" if p == self.plan else ""
            lines.append(f"  {p.label.ljust(width)}  {format_bytes(e.peak):>10}{mark}")
        if not self.fits:
            lines.append(f"  no plan fits {format_bytes(self.budget)}: using the most frugal one; lower the "
                         "resolution or frames if the run runs out of memory")
        return "\n".join(lines)


def choose(backbone, budget: int, work: Workload, device: str | torch.device = "cpu",
           tile: int | None = None) -> Choice:
    """The first (fastest) candidate plan whose estimated peak fits ``budget``, else the most frugal."""
    weights = component_weights(backbone, work.dtype_bytes)  # counted once for every plan
    rows = tuple((p, estimate(backbone, work, p, device, weights)) for p in candidate_plans(backbone, device, tile))
    fitting = [p for p, e in rows if e.peak <= budget]
    plan = fitting[0] if fitting else min(reversed(rows), key=lambda r: r[1].peak)[0]  # ties: more options
    return Choice(plan, budget, rows)


def apply(backbone, plan: Plan, device: str | torch.device = "cpu"):
    """Set ``plan``'s options on the backbone's modules (in place); returns the backbone."""
    key, net = _denoiser(backbone)
    vae = backbone.components["vae"]
    if plan.chunk:
        if hasattr(net, "enable_forward_chunking"):
            net.enable_forward_chunking(chunk_size=1, dim=0)
        else:
            chunk_feed_forward(net, FF_CHUNKS)
    if plan.vae_slicing:
        if "decode_chunk" in {f.name for f in dataclasses.fields(backbone.settings)}:
            backbone.settings = dataclasses.replace(backbone.settings, decode_chunk=1)
        if hasattr(vae, "use_slicing"):  # diffusers' VAEs that implement slicing set this attribute
            vae.enable_slicing()
    if plan.vae_tiling and supports(backbone, "vae-tiling"):
        th, tw = _tile(vae, plan)
        if hasattr(vae, "tile_sample_min_size"):  # AutoencoderKL: one square tile size
            vae.enable_tiling()
            vae.tile_sample_min_size = th
            vae.tile_latent_min_size = th // backbone.spatial_factor
        else:
            vae.enable_tiling(tile_sample_min_height=th, tile_sample_min_width=tw)
    if plan.offload != "none":
        _offload(backbone, plan.offload, torch.device(device))
    backbone.memory_plan = plan
    return backbone


def _offload(backbone, kind: Offload, device: torch.device) -> None:
    from accelerate import cpu_offload, cpu_offload_with_hook

    modules = [m for m in backbone.components.values() if isinstance(m, torch.nn.Module)]
    hook = None
    for m in modules:
        if kind == "model":
            m.to("cpu")
            _, hook = cpu_offload_with_hook(m, execution_device=device, prev_module_hook=hook)
        else:
            cpu_offload(m, execution_device=device)
    backbone.execution_device = device


def _chunked_forward(self, hidden_states, *args, **kwargs):
    parts = hidden_states.split(math.ceil(hidden_states.shape[1] / self._vdm3d_chunks), dim=1)
    return torch.cat([type(self).forward(self, p, *args, **kwargs) for p in parts], dim=1)


def chunk_feed_forward(net: torch.nn.Module, chunks: int) -> int:
    """Run every diffusers ``FeedForward`` of ``net`` over ``chunks`` slices of its tokens (dim 1).
    The layer is token-wise, so the output is the same; returns how many layers were chunked."""
    from diffusers.models.attention import FeedForward

    n = 0
    for m in net.modules():
        if isinstance(m, FeedForward):
            m._vdm3d_chunks = chunks
            m.forward = types.MethodType(_chunked_forward, m)
            n += 1
    return n


# ---------------------------------------------------------------------- the job's entry
_budget: dict[str, Any] = {"memory": None, "report": None}


def configure(memory: str | int | None, report: Callable[[str], None] | None = None) -> None:
    """Plan every hub backbone loaded from now on (``memory``: a budget like ``"24GB"``, ``"auto"`` for
    the device's free memory, or None to stop planning); ``report`` prints the plan table."""
    if memory not in (None, "auto"):
        parse_memory(memory)
    _budget.update(memory=memory, report=report)


def job_workload(backbone, size: int | tuple[int, int] | None = None, frames: int | None = None) -> Workload:
    """What a job runs the backbone at: ``size`` ``(height, width)``, or an int for the longest side at the
    backbone's own aspect ratio (None: its native resolution); ``frames`` (None: its native clip length)."""
    h, w = backbone.resolution
    if isinstance(size, int):
        scale = size / max(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    elif size is not None:
        h, w = int(size[0]), int(size[1])
    return Workload(frames=frames or backbone.frames or 1, height=h, width=w,
                    dtype_bytes=torch.finfo(backbone.dtype).bits // 8)


def plan_loaded(backbone, memory: str | int | None = None, device: str | torch.device = "cpu",
                report: Callable[[str], None] | None = None, size: int | tuple[int, int] | None = None,
                frames: int | None = None):
    """Plan and apply for a just-loaded backbone (``memory`` None: what :func:`configure` set), for the
    workload the job runs (``size``/``frames``: :func:`job_workload`; None: the model's native size)."""
    memory = memory if memory is not None else _budget["memory"]
    report = report or _budget["report"]
    if memory is None:
        return backbone
    # the command line refused budgets under MIN_BUDGET already (pop_memory_flag); from Python a tiny one is a
    # way to ask for the most frugal plan
    budget = available_memory(device) if memory == "auto" else parse_memory(memory, minimum=1)
    work = job_workload(backbone, size, frames)
    choice = choose(backbone, budget, work, device)
    apply(backbone, choice.plan, device)
    if report is not None:
        report(choice.table(backbone.name, work))
    return backbone


def note_embedded(backbone: torch.nn.Module, memory: str | int | None = None) -> torch.nn.Module:
    """Say, where the user gave ``--memory`` (``memory`` None: what :func:`configure` set; ``"auto"``, every
    job's default, says nothing), that an embedded model needs no plan, with its size: the flag plans hub
    backbones, and a job with the embedded default printed nothing, as if the flag had been lost."""
    memory = memory if memory is not None else _budget["memory"]
    report = _budget["report"]
    if memory not in (None, "auto") and report is not None:
        params = list(backbone.parameters())
        count, size = sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)
        name = getattr(backbone, "name", type(backbone).__name__)
        report(f"memory: {name} is an embedded model ({count / 1e6:.1f} M parameters, {size / 1e6:.1f} MB); "
               f"--memory plans hub backbones, so it runs as is.")
    return backbone


def print_plan(text: str) -> None:
    """The plan goes to stdout with the job's other progress messages (stderr keeps only errors, so a
    refused input is still one sentence there)."""
    print(text, file=sys.stdout, flush=True)


# ---------------------------------------------------------------------- measuring
def measure_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes of CPU tensors allocated while ``fn`` runs (torch's profiler memory events, summed in
    time order): tensors alive before the call (weights) are not counted."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak
