"""One training loop for every tiny model, built on ``accelerate``.

The same code runs on one CPU, one GPU or several processes (``accelerate launch``): the model and
optimizer go through ``Accelerator.prepare``, gradients through ``accelerator.backward``. Batches are
drawn from a generator seeded by ``(seed, step, process)``, so a resumed run sees exactly the batches
an uninterrupted run would have seen, without storing data-loader state.

Checkpoints (``checkpoints/state.safetensors`` + ``state.json``) hold the model, its EMA, the AdamW
moments, the step and the losses of the log window still open (a checkpoint falls between two log lines,
and a resumed run must log the same mean losses as an uninterrupted one); they are written with
safetensors (no pickle) every ``checkpoint_every`` steps, at the end, and when ``time_limit_min`` is
reached (the run then stops cleanly, so a budgeted run always leaves usable weights). The JSON state
(step, optimizer groups, losses, the open window) is also kept in the safetensors file's metadata, so
that file alone is one consistent checkpoint: a process killed between the two writes must not resume
one step's weights with another step's count and schedule.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Annotated, Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from vdm3d.errors import raise_if_interrupted
from vdm3d.io.progress import eta_seconds, format_seconds
from vdm3d.io.runs import atomic_write_bytes, atomic_write_json, holds_state, to_jsonable
from vdm3d.options import SEED, Range


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Optimization settings shared by every ``vdm3d train`` command."""

    steps: Annotated[int, Range(1)] = 2000
    """optimizer steps in total (a resumed run continues up to this number)"""
    lr: Annotated[float, Range(0, open_min=True)] = 3e-4
    """AdamW learning rate (after a linear warm-up, cosine decay to 10%)"""
    warmup: Annotated[int, Range(0)] = 100
    """linear warm-up steps"""
    weight_decay: Annotated[float, Range(0)] = 0.0
    """AdamW weight decay"""
    grad_clip: Annotated[float, Range(0, open_min=True)] = 1.0
    """gradient norm clip"""
    ema_decay: Annotated[float, Range(0, 1, open_max=True)] = 0.995
    """EMA decay of the weights that are saved (0 disables EMA)"""
    checkpoint_every: Annotated[int, Range(0)] = 250
    """steps between checkpoints"""
    log_every: Annotated[int, Range(1)] = 25
    """steps between log lines"""
    seed: Annotated[int, SEED] = 0
    """seed of the initialization, the batches and the noise"""
    time_limit_min: Annotated[float, Range(0)] = 0.0
    """stop (and checkpoint) after this many minutes of training; 0 means no limit"""
    threads: Annotated[int, Range(0)] = 0
    """torch CPU threads (0: leave torch's default)"""
    cpu: bool = False
    """train on the CPU even when an accelerator is present"""


class EMA:
    """Exponential moving average of a module's floating-point parameters and buffers."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm start: early averages forget quickly
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow)


def lr_at(step: int, cfg: LoopConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


STATE_KEY = "state"  # the safetensors metadata entry holding the JSON state


def save_state(folder: Path, model: nn.Module, ema: EMA | None, opt: torch.optim.Optimizer, step: int,
               info: dict[str, Any]) -> None:
    """Write ``state.safetensors`` (with the JSON state in its metadata), then ``state.json``, each
    atomically, into ``folder``."""
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.cpu().contiguous() for k, v in ema.shadow.items()})
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for name, value in st.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = to_jsonable({"step": step, "param_groups": opt_state["param_groups"], **info})
    tensors = {k: v.clone() for k, v in tensors.items()}  # shared storage (tied weights) split, as safetensors needs
    atomic_write_bytes(folder / "state.safetensors", save(tensors, metadata={STATE_KEY: json.dumps(meta)}))
    atomic_write_json(folder / "state.json", meta)


def load_state(folder: Path, model: nn.Module, ema: EMA | None, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote; returns the JSON info (with ``step``). The info comes from
    the tensors file's metadata; ``state.json`` is read only for checkpoints written before it was there."""
    from safetensors import safe_open

    with safe_open(str(folder / "state.safetensors"), framework="pt") as f:  # metadata and tensors from one file
        stamped = (f.metadata() or {}).get(STATE_KEY)
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    info = json.loads(stamped if stamped is not None else (folder / "state.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None and any(k.startswith("ema.") for k in tensors):
        ema.shadow = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    state: dict[int, dict[str, Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    return info


StepFn = Callable[[nn.Module, np.random.Generator, torch.Generator, torch.device], tuple[Tensor, dict[str, float]]]


def train(model: nn.Module, step_fn: StepFn, cfg: LoopConfig, checkpoint_dir: Path, *, resume: bool = False,
          log: Callable[[str], None] = print, stop_after: int | None = None) -> dict[str, Any]:
    """Optimize ``model`` with ``step_fn(model, rng, generator, device) -> (loss, logs)``.

    Returns a summary: ``steps``, ``seconds`` (training wall time, summed over resumes), ``losses``
    (mean loss per log window) and ``stopped`` (``"done"``, ``"time_limit"`` or ``"stop_after"``). On
    return the model holds the EMA weights (the ones to ship). ``stop_after`` ends this session after
    that many steps with a checkpoint, exactly like an interruption at a checkpoint.
    """
    from accelerate import Accelerator

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = Accelerator(cpu=cfg.cpu or not torch.cuda.is_available())
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    start, seconds, history, window = 0, 0.0, [], []
    if resume and holds_state(checkpoint_dir, key=STATE_KEY):
        info = load_state(checkpoint_dir, model, ema, opt)
        start, seconds, history = info["step"], info.get("seconds", 0.0), info.get("losses", [])
        window = info.get("window", [])  # absent from checkpoints written before it was saved: a shorter mean
        log(f"resumed at step {start}")
    model, opt = accelerator.prepare(model, opt)
    raw_model = accelerator.unwrap_model(model)
    if ema is not None:
        ema.shadow = {k: v.to(accelerator.device) for k, v in ema.shadow.items()}
    model.train()
    stopped = "done"
    t0 = time.time()
    step = start
    for step in range(start, cfg.steps):
        raise_if_interrupted()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        rng = np.random.default_rng([cfg.seed, step, accelerator.process_index])
        gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**62)))
        loss, logs = step_fn(model, rng, gen, accelerator.device)
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(raw_model, step)
        window.append(float(loss.detach()))
        done = step + 1
        elapsed = seconds + time.time() - t0
        over = cfg.time_limit_min > 0 and elapsed > 60 * cfg.time_limit_min
        interrupted = stop_after is not None and done - start >= stop_after
        if done % cfg.log_every == 0 or done == cfg.steps or over:
            history.append([done, float(np.mean(window))])
            extra = " ".join(f"{k}={v:.4g}" for k, v in logs.items())
            eta = eta_seconds(done, cfg.steps, time.time() - t0, start)  # this session's mean rate
            log(f"step {done}/{cfg.steps} loss={np.mean(window):.4g} {extra} lr={lr_at(step, cfg):.2e} "
                f"t={elapsed:.0f}s" + (f" eta={format_seconds(eta)}" if eta is not None and done < cfg.steps else ""))
            window = []
        if accelerator.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.steps or over
                                            or interrupted):
            save_state(checkpoint_dir, raw_model, ema, opt, done,
                       {"seconds": elapsed, "losses": history, "window": window})
        if over or interrupted:
            stopped = "time_limit" if over else "stop_after"
            break
    accelerator.wait_for_everyone()
    seconds += time.time() - t0
    model.eval()
    if ema is not None:
        ema.copy_to(raw_model)
    return {"steps": step + 1 if cfg.steps > start else start, "seconds": round(seconds, 1),
            "losses": history, "stopped": stopped, "device": str(accelerator.device),
            "processes": accelerator.num_processes}
