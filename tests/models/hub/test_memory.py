"""The memory planner on tiny random configs of every hub adapter: the parameter counts come from the
configs, each option is applied to the modules (and changes no output where it is exact), the
estimate orders plans like the measured CPU peak, and `--memory` reaches the loader from a job's CLI."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vdm3d.errors import ConfigError
from vdm3d.models.hub import memory as M
from vdm3d.protocols import Conditioning

SIZE = 32


def _svd(frames=4, size=64):
    from vdm3d.models.hub.svd import SVDBackbone, SVDSettings, tiny_components

    return SVDBackbone(tiny_components(0), SVDSettings(frames=frames, height=size, width=size))


def _sv3d(frames=4, size=64):
    from vdm3d.models.hub.sv3d import SV3DBackbone, SV3DSettings, tiny_components

    return SV3DBackbone(tiny_components(0), SV3DSettings(frames=frames, height=size, width=size))


def _cogvideox():
    from vdm3d.models.hub.cogvideox import CogVideoXBackbone, CogVideoXSettings, tiny_components

    return CogVideoXBackbone(tiny_components(0, frames=9),
                             CogVideoXSettings(frames=9, height=SIZE, width=SIZE, max_text_tokens=8))


def _wan():
    from vdm3d.models.hub.wan import WanBackbone, WanSettings, tiny_components

    return WanBackbone(tiny_components(0), WanSettings(frames=5, height=SIZE, width=SIZE, max_text_tokens=8))


def _flux():
    from vdm3d.models.hub.flux import FluxBackbone, FluxSettings, tiny_components

    return FluxBackbone(tiny_components(0), FluxSettings(height=SIZE, width=SIZE, max_text_tokens=8, clip_tokens=8))


BUILDERS = {"svd": _svd, "sv3d": _sv3d, "cogvideox": _cogvideox, "wan": _wan, "flux": _flux}


def _denoise_once(bb, seed=0):
    """One CFG-batched denoiser call at the backbone's own resolution and frame count."""
    g = torch.Generator().manual_seed(seed)
    h, w = bb.resolution
    frames = bb.frames or 1
    fl = (frames - 1) // bb.temporal_factor + 1 if bb.temporal_factor > 1 else frames
    ref = torch.rand(1, h, w, 3, generator=g)
    x = torch.randn(2, fl, bb.latent_channels, h // bb.spatial_factor, w // bb.spatial_factor, generator=g)
    with torch.no_grad():
        cond = bb.condition(Conditioning(reference=ref, text="a red car"))
        return bb.denoise(x, torch.tensor([1.5, 1.5]), cond)


def test_parse_memory():
    assert M.parse_memory("24GB") == 24 * 1024**3
    assert M.parse_memory("512 MiB") == 512 * 1024**2
    assert M.parse_memory("1.5g") == int(1.5 * 1024**3)
    assert M.parse_memory(1000, minimum=1) == 1000
    for bad in ("lots", "24 parsecs", "0GB", ""):
        with pytest.raises(ConfigError, match="--memory"):
            M.parse_memory(bad)
    # a budget no device has is a typo: refused on the command line (QA: --memory 1KB ran)
    assert M.parse_memory("256MB") == M.MIN_BUDGET
    with pytest.raises(ConfigError) as err:
        M.parse_memory("1KB")
    assert str(err.value) == ("--memory '1KB' is 1.0 KiB, less than the 256 MiB any plan needs; give the device's "
                              "memory, like 24GB (or leave --memory out: its free memory).")
    with pytest.raises(ConfigError, match=r"'255MiB' is 255.0 MiB, less than"):
        M.parse_memory("255MiB")
    # binary units are named as binary units (24GB and 24GiB are the same amount here)
    assert M.format_bytes(M.parse_memory("24GB")) == M.format_bytes(M.parse_memory("24GiB")) == "24.00 GiB"
    assert M.format_bytes(M.parse_memory("1TB")) == "1.00 TiB" and M.format_bytes(512 * 1024**2) == "0.50 GiB"


@pytest.mark.parametrize("name", list(BUILDERS))
def test_parameter_count_comes_from_the_config(name):
    bb = BUILDERS[name]()
    for key, module in bb.components.items():
        if isinstance(module, torch.nn.Module):
            total, leaf = M.parameter_count(module)
            assert total == sum(p.numel() for p in module.parameters()), key
            assert 0 < leaf <= total


@pytest.mark.parametrize("name", list(BUILDERS))
def test_estimate_orders_plans_on_an_accelerator(name):
    """Along the candidate plans (fastest first) the estimate never rises, and each offload lowers it."""
    bb = BUILDERS[name]()
    h, w = bb.resolution
    work = M.Workload(bb.frames or 1, h, w)
    plans = M.candidate_plans(bb, "cuda")
    peaks = [M.estimate(bb, work, p, "cuda").peak for p in plans]
    assert all(a >= b for a, b in zip(peaks, peaks[1:])), list(zip([p.label for p in plans], peaks))
    assert [p.offload for p in plans[-2:]] == ["model", "sequential"]
    assert peaks[-3] > peaks[-2] > peaks[-1]
    # on CPU the weights stay in host memory: no offload is offered
    assert all(p.offload == "none" for p in M.candidate_plans(bb, "cpu"))


@pytest.mark.parametrize("name", ["cogvideox", "wan", "flux"])
def test_chunking_transformer_feed_forward_is_applied_and_exact(name):
    plain = _denoise_once(BUILDERS[name]())
    bb = M.apply(BUILDERS[name](), M.Plan(chunk=True))
    from diffusers.models.attention import FeedForward

    ffs = [m for m in bb.transformer.modules() if isinstance(m, FeedForward)]
    assert ffs and all(m._vdm3d_chunks == M.FF_CHUNKS and "forward" in m.__dict__ for m in ffs)
    torch.testing.assert_close(_denoise_once(bb), plain, rtol=1e-5, atol=1e-5)
    assert bb.memory_plan == M.Plan(chunk=True)


def test_unet_options_are_applied_and_lower_the_measured_peak():
    """SVD: chunking sets diffusers' forward chunking on every transformer block and lowers the measured
    peak of a denoiser call as the estimate says; slicing decodes one frame at a time."""
    plain = _svd()
    chunked = M.apply(_svd(), M.Plan(chunk=True, vae_slicing=True))
    blocks = [m for m in chunked.unet.modules() if hasattr(m, "_chunk_size")]
    assert blocks and all(m._chunk_size == 1 for m in blocks)  # temporal blocks chunk dim 1 by design
    assert chunked.settings.decode_chunk == 1 and plain.settings.decode_chunk > 1
    assert not M.supports(plain, "vae-tiling")  # the temporal decoder has no tiled decode
    torch.testing.assert_close(_denoise_once(chunked), _denoise_once(plain), rtol=1e-5, atol=1e-5)
    work = M.Workload(4, 64, 64)
    est = [M.estimate(b, work, p).denoiser for b, p in ((plain, M.Plan()), (chunked, chunked.memory_plan))]
    measured = [M.measure_peak(lambda b=b: _denoise_once(b)) for b in (plain, chunked)]
    assert est[0] > est[1] and measured[0] > measured[1], (est, measured)
    z = torch.randn(1, 4, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        dec = [M.measure_peak(lambda b=b: b.decode(z)) for b in (plain, chunked)]
    assert dec[0] > dec[1]


def test_vae_slicing_and_tiling_order_matches_measured_peak():
    """SV3D's per-frame AutoencoderKL: no option > slicing > slicing + tiling, estimated and measured."""
    plans = [M.Plan(), M.Plan(vae_slicing=True), M.Plan(vae_slicing=True, vae_tiling=True, tile=32)]
    z = torch.randn(1, 4, 4, 32, 32, generator=torch.Generator().manual_seed(4))
    est, measured, outputs = [], [], []
    for plan in plans:
        bb = M.apply(_sv3d(), plan)
        assert bb.vae.use_slicing == plan.vae_slicing and bb.vae.use_tiling == plan.vae_tiling
        est.append(M.estimate(bb, M.Workload(4, 64, 64), plan).vae)
        with torch.no_grad():
            measured.append(M.measure_peak(lambda bb=bb: bb.decode(z)))
            outputs.append(bb.decode(z))
    assert bb.vae.tile_sample_min_size == 32 and bb.vae.tile_latent_min_size == 16
    assert est[0] > est[1] > est[2] and measured[0] > measured[1] > measured[2], (est, measured)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)  # slicing is exact


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_offload_installs_accelerate_hooks_and_keeps_outputs(offload):
    plain = _denoise_once(_wan())
    bb = M.apply(_wan(), M.Plan(offload=offload), device="cpu")
    assert bb.device == torch.device("cpu")
    if offload == "model":
        assert all(type(m._hf_hook).__name__ == "CpuOffload" for m in (bb.transformer, bb.vae))
    else:  # weights wait on the meta device; each leaf loads its own at forward
        assert {p.device.type for p in bb.transformer.parameters()} == {"meta"}
        assert any(hasattr(m, "_hf_hook") for m in bb.transformer.modules())
    torch.testing.assert_close(_denoise_once(bb), plain, rtol=1e-5, atol=1e-5)


def test_choose_takes_the_fastest_plan_that_fits():
    bb = _sv3d()
    work = M.Workload(4, 64, 64)
    roomy = M.choose(bb, 10 * M.GB, work)
    assert roomy.plan == M.Plan() and roomy.fits
    rows = M.choose(bb, 1, work, "cuda").rows
    lowest = float("inf")
    for plan, est in rows:  # a budget of exactly a plan's peak picks it when no faster plan fits
        if est.peak < lowest:
            fit = M.choose(bb, est.peak, work, "cuda")
            assert fit.plan == plan and fit.fits
            lowest = est.peak
    tight = M.choose(bb, 1, work, "cuda")
    assert not tight.fits and tight.plan.offload == "sequential"
    table = tight.table("sv3d")
    assert "<- chosen" in table and "no plan fits" in table and "seq-offload" in table


def test_load_backbone_plans_and_prints(tmp_path, capsys):
    """The registry plans a hub backbone when asked (here a 1 MB budget: the most frugal CPU plan)."""
    from vdm3d.models.registry import load_backbone

    _sv3d(frames=2, size=SIZE).save_pretrained(tmp_path / "m")
    reports = []
    bb = load_backbone("sv3d-p", tmp_path / "m", memory="1MB", frames=2, height=SIZE, width=SIZE)
    assert bb.memory_plan == M.Plan(chunk=True, vae_slicing=True, vae_tiling=True)
    bb = load_backbone("sv3d-p", tmp_path / "m", memory="100GB", frames=2, height=SIZE, width=SIZE)
    assert bb.memory_plan == M.Plan()
    M.plan_loaded(bb, "1MB", report=reports.append)
    assert "memory plan for sv3d-p at 2 frames of 32x32 (HxW) (budget 1.0 MiB)" in reports[0]


def test_job_cli_takes_memory(monkeypatch, tmp_path, capsys):
    """`--memory` is taken out before tyro, checked, and configures every later hub load, which prints
    its plan; tiny models are never planned, and say so when --memory was given (a job with the embedded
    default printed nothing for it, as if the flag had been lost)."""
    from vdm3d.cli.config import cli, pop_memory_flag
    from vdm3d.jobs.explore import ExploreConfig
    from vdm3d.models.registry import load_backbone

    assert pop_memory_flag(["--image", "a.png", "--memory", "8GB"]) == (["--image", "a.png"], "8GB")
    assert pop_memory_flag(["--memory=512MB"]) == ([], "512MB")
    assert pop_memory_flag(["--image", "a.png"]) == (["--image", "a.png"], "auto")
    with pytest.raises(ConfigError, match="--memory 'plenty'"):
        pop_memory_flag(["--memory", "plenty"])
    monkeypatch.setattr(M, "_budget", dict(M._budget))
    config = cli(ExploreConfig, ["--image", "a.png", "--memory", "8GB"], "vdm3d explore", memory=True)
    assert isinstance(config, ExploreConfig) and M._budget["memory"] == "8GB"
    assert dataclasses.is_dataclass(config)
    _sv3d(frames=2, size=SIZE).save_pretrained(tmp_path / "m")
    capsys.readouterr()
    bb = load_backbone("sv3d-p", tmp_path / "m", frames=2, height=SIZE, width=SIZE)
    assert bb.memory_plan == M.Plan()
    assert "memory plan for sv3d-p at 2 frames of 32x32 (HxW) (budget 8.00 GiB)" in capsys.readouterr().out  # stderr is for errors
    tiny = load_backbone("tiny-video")
    count = sum(p.numel() for p in tiny.parameters())
    assert not hasattr(tiny, "memory_plan") and capsys.readouterr().out == (
        f"memory: tiny-video is an embedded model ({count / 1e6:.1f} M parameters, {4 * count / 1e6:.1f} MB); "
        "--memory plans hub backbones, so it runs as is.\n")
    cli(ExploreConfig, ["--image", "a.png"], "vdm3d explore", memory=True)  # no --memory: "auto", no line
    assert M._budget["memory"] == "auto"
    load_backbone("tiny-video")
    assert capsys.readouterr().out == ""


def test_memory_flag_errors_and_lasts_one_command(tmp_path, capsys):
    from vdm3d.cli.main import main

    assert main(["explore", "--image", str(tmp_path / "a.png"), "--memory", "plenty"]) == 2
    assert "--memory 'plenty' is not an amount of memory; write it like 24GB" in capsys.readouterr().err
    assert main(["explore", "--image", str(tmp_path / "missing.png"), "--memory", "8GB"]) == 2  # bad input
    assert M._budget["memory"] is None  # the next command (or library call) is not planned by this one


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_option_is_set_on_every_adapter(name):
    """The most frugal accelerator plan (all options, model offload) sets each option the adapter's
    modules support: forward chunking, VAE slicing/tiling, one accelerate CpuOffload hook per component."""
    bb = BUILDERS[name]()
    plan = M.Plan(offload="model", chunk=True, vae_slicing=True, vae_tiling=True, tile=16)
    M.apply(bb, plan, device="cpu")
    net = bb.unet if name in ("svd", "sv3d") else bb.transformer
    if name in ("svd", "sv3d"):
        assert all(m._chunk_size == 1 for m in net.modules() if hasattr(m, "_chunk_size"))
    else:
        assert any(getattr(m, "_vdm3d_chunks", 0) == M.FF_CHUNKS for m in net.modules())
    if hasattr(bb.vae, "use_slicing"):
        assert bb.vae.use_slicing and bb.vae.use_tiling
        size = getattr(bb.vae, "tile_sample_min_size", None) or bb.vae.tile_sample_min_height
        assert size == 16
    else:  # SVD's temporal decoder: one frame per decode, no tiling
        assert bb.settings.decode_chunk == 1 and not M.supports(bb, "vae-tiling")
    modules = [m for m in bb.components.values() if isinstance(m, torch.nn.Module)]
    assert all(type(getattr(m, "_hf_hook", None)).__name__ == "CpuOffload" for m in modules)
    assert bb.memory_plan == plan


def test_the_plan_is_for_the_size_the_job_runs(tmp_path, monkeypatch):
    """A 32 px run of a 64 px model is planned at 32 px: the UNet's activations (skips, residual stream,
    attention projections, feed-forward: each proportional to the latent pixels) and the VAE's fall to a
    quarter, the table names the size, and the object/complete jobs pass their --resolution /
    --generation.max-side to the planner."""
    from vdm3d.models import registry

    _sv3d(frames=4, size=64).save_pretrained(tmp_path / "m")
    bb = registry.load_backbone("sv3d-p", tmp_path / "m", frames=4, height=64, width=64)
    full, half = M.job_workload(bb), M.job_workload(bb, (32, 32))
    assert (full.height, full.width, full.frames) == (64, 64, 4) and (half.height, half.width) == (32, 32)
    for plan in (M.Plan(), M.Plan(chunk=True)):
        assert M.denoiser_activations(bb, full, plan) == 4 * M.denoiser_activations(bb, half, plan)
        assert M.vae_activations(bb, full, plan) == 4 * M.vae_activations(bb, half, plan)
    reports = []
    M.plan_loaded(bb, "100GB", report=reports.append, size=(32, 32))
    none_row = next(line for line in reports[0].splitlines() if line.strip().startswith("none"))
    assert "memory plan for sv3d-p at 4 frames of 32x32 (HxW) (budget 100.00 GiB)" in reports[0]
    assert M.format_bytes(M.estimate(bb, half, M.Plan()).peak) in none_row
    assert M.format_bytes(M.estimate(bb, full, M.Plan()).peak) not in none_row
    reports.clear()  # a landscape size reads as the registry writes it: height x width
    M.plan_loaded(bb, "100GB", report=reports.append, size=(32, 48))
    assert "memory plan for sv3d-p at 4 frames of 32x48 (HxW) (budget 100.00 GiB)" in reports[0]
    wide = _svd(frames=2, size=64)
    wide.resolution = (64, 128)
    longest = M.job_workload(wide, 32)
    assert (longest.height, longest.width, longest.frames) == (16, 32, 2)  # an int: the longest side, same aspect

    calls = []

    def fake_load(name, *args, **kwargs):
        calls.append(kwargs)
        raise RuntimeError("stop after the call")

    from vdm3d.jobs import complete, object as object_job

    monkeypatch.setattr(object_job, "load_backbone", fake_load)
    with pytest.raises(RuntimeError, match="stop"):
        object_job.load_orbit_source(object_job.ObjectConfig(backbone="sv3d-p", resolution=32))
    monkeypatch.setattr(registry, "load_backbone", fake_load)
    with pytest.raises(RuntimeError, match="stop"):
        complete.load_backbone("svd-xt", 48)
    assert calls == [{"plan_size": (32, 32)}, {"plan_size": 48}]
