"""The sampler loop against closed-form Gaussian statistics, frozen elements, and its contracts."""

from __future__ import annotations

import pytest
import torch

from vdm3d.diffusion.parameterizations import align_sigma
from vdm3d.diffusion.samplers import SAMPLERS, SamplerConfig, sample, sample_with
from vdm3d.diffusion.schedules import DdimSchedule, EdmSchedule, FlowSchedule, frozen_until, strength_sigmas
from vdm3d.diffusion.testing import ConvDenoiser, GaussianDataDenoiser
from vdm3d.errors import ConfigError, InputError
from vdm3d.protocols import Conditioning

# Eight independent Gaussian "pixels" with different means and variances.
MEAN = torch.linspace(-0.5, 0.5, 8).view(1, 8, 1, 1)
VAR = torch.linspace(0.25, 2.0, 8).view(1, 8, 1, 1)

SAMPLER_CASES = {
    "euler_edm": (lambda n: EdmSchedule(n).sigmas(), 0.0),
    "ddim_eta0": (lambda n: DdimSchedule(n, "trailing", zero_terminal_snr=True).sigmas(), 0.0),
    "ddim_eta1": (lambda n: DdimSchedule(n, "trailing", zero_terminal_snr=True).sigmas(), 1.0),
    "flow_euler": (lambda n: FlowSchedule(n, shift=5.0).sigmas(), 0.0),
}


def standard_noise(n: int, generator: torch.Generator) -> torch.Tensor:
    """Unit noise whose per-pixel sample mean is exactly 0 and variance exactly 1, so a deterministic
    sampler's output statistics carry no sampling error."""
    z = torch.randn(n, 1, 8, 1, 1, generator=generator, dtype=torch.float64)
    return (z - z.mean(0)) / z.std(0)


def predicted_variance(sigmas: torch.Tensor, var: torch.Tensor, eta: float) -> torch.Tensor:
    """The variance the discrete update produces with the exact denoiser, by its own recursion:
    ``x' - mu = (v + det s) / (v + s^2) (x - mu) + std z``."""
    s = sigmas.double()
    out = (1.0 + s[0] ** 2) * torch.ones_like(var, dtype=torch.float64)
    for a, b in zip(s[:-1], s[1:]):
        std = eta * b * (1 - (b / a) ** 2).clamp_min(0).sqrt()
        det = (b * b - std * std).sqrt()
        gain = (var + det * a) / (var + a * a)
        out = gain**2 * out + std**2
    return out


def run_gaussian(name: str, steps: int, n: int):
    make, eta = SAMPLER_CASES[name]
    sigmas = make(steps)
    g = torch.Generator().manual_seed(7)
    bb = GaussianDataDenoiser(MEAN.double(), VAR.double())
    x = sample(bb, sigmas, noise=standard_noise(n, g), generator=g, eta=eta)
    return sigmas, eta, x.mean(0), x.var(0)


def test_gaussian_denoiser_is_the_bayes_optimal_x0_predictor():
    """The protocol's promise ``denoise(x, sigma) = E[x0 | x]`` checked by Monte Carlo: on draws
    ``x = x0 + sigma eps`` the residual ``x0 - D(x)`` has zero mean and is uncorrelated with ``x`` (the
    orthogonality principle, which characterizes the MMSE estimator of Gaussian data), for per-batch,
    per-frame and per-element sigma; the latents decode to the images they encode."""
    g = torch.Generator().manual_seed(0)
    mean, var = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    bb = GaussianDataDenoiser(mean, var)
    n = 200_000
    x0 = mean + var.sqrt() * torch.randn(n, 2, 1, 1, 1, generator=g, dtype=torch.float64)
    sigmas = {"batch": torch.full((n,), 0.7, dtype=torch.float64),
              "frame": torch.tensor([0.2, 3.0], dtype=torch.float64).expand(n, 2),
              "element": torch.tensor([1.5, 0.4], dtype=torch.float64).view(1, 2, 1, 1, 1).expand(n, 2, 1, 1, 1)}
    for kind, sigma in sigmas.items():
        x = x0 + align_sigma(sigma, x0) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
        residual = x0 - bb.denoise(x, sigma, bb.condition(Conditioning()))
        assert residual.mean(0).abs().max() < 0.01, kind
        corr = ((residual - residual.mean(0)) * (x - x.mean(0))).mean(0) / (residual.std(0) * x.std(0))
        assert corr.abs().max() < 0.01, kind
        # and it is not a trivial estimator: it beats returning the noisy input and the prior mean
        mse = residual.pow(2).mean()
        assert mse < (x0 - x).pow(2).mean() and mse < (x0 - mean).pow(2).mean(), kind
    images = torch.rand(1, 2, 4, 4, 3, generator=g)
    torch.testing.assert_close(bb.decode(bb.encode(images)), images)
    # the null branch is a different condition (CFG would otherwise be a no-op)
    other = GaussianDataDenoiser(0.0, 1.0, null_mean=2.0)
    x = torch.zeros(1, 1, 3, 2, 2)
    assert not torch.equal(other.denoise(x, torch.ones(1), other.condition(Conditioning())),
                           other.denoise(x, torch.ones(1), other.condition(Conditioning(), null=True)))


def test_conv_denoiser_follows_v_scaling_and_is_per_frame():
    """At sigma -> 0 a v-scaled denoiser returns its input (c_skip -> 1, c_out -> 0); a uniform
    per-element sigma gives the per-batch result; frames are denoised independently; the reference
    image changes the prediction and the null branch drops it."""
    bb = ConvDenoiser(width=8, resolution=(8, 8))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 3, 8, 8, generator=g)
    cond = bb.condition(Conditioning(reference=torch.rand(2, 8, 8, 3, generator=g)))
    with torch.no_grad():
        torch.testing.assert_close(bb.denoise(x, torch.full((2,), 1e-6), cond), x, rtol=0, atol=1e-5)
        per_batch = bb.denoise(x, torch.full((2,), 2.0), cond)
        per_element = bb.denoise(x, torch.full((2, 3, 1, 8, 8), 2.0), cond)
        torch.testing.assert_close(per_element, per_batch)
        one_frame = bb.denoise(x[:, 1:2], torch.full((2,), 2.0), cond)
        torch.testing.assert_close(one_frame, per_batch[:, 1:2])
        null = bb.denoise(x, torch.full((2,), 2.0), bb.condition(Conditioning(reference=torch.rand(2, 8, 8, 3)),
                                                                  null=True))
        no_ref = bb.denoise(x, torch.full((2,), 2.0), bb.condition(Conditioning(), null=True).expand(2, 3, 8, 8))
    assert (null - per_batch).abs().max() > 1e-3
    torch.testing.assert_close(null, no_ref)


@pytest.mark.parametrize("name", list(SAMPLER_CASES))
def test_mean_within_2_percent_and_variance_matches_the_discrete_update_at_50_steps(name):
    sigmas, eta, mean, var = run_gaussian(name, 50, 20000)
    assert ((mean - MEAN) / VAR.sqrt()).abs().max() < 0.02
    expected = predicted_variance(sigmas, VAR, eta)
    # deterministic samplers are exact up to float error; ancestral noise adds ~1% sampling error
    tol = 0.03 if eta > 0 else 1e-3
    assert ((var / expected) - 1).abs().max() < tol


@pytest.mark.slow
@pytest.mark.parametrize("name", ["euler_edm", "ddim_eta0", "flow_euler"])
def test_variance_within_2_percent_once_the_first_order_bias_is_small(name):
    # First-order samplers shrink the variance by O(1/S): 13-16% at 50 steps, ~1% at 1000 (see
    # benchmarks/sampling.py). Standardized noise makes the deterministic runs free of sampling error.
    _, _, mean, var = run_gaussian(name, 1000, 2000)
    assert ((mean - MEAN) / VAR.sqrt()).abs().max() < 0.02
    assert ((var / VAR) - 1).abs().max() < 0.02


def test_published_presets_build():
    for name, (_, cfg) in SAMPLERS.items():
        s = cfg.sigmas()
        assert s.shape == (51,) and s[-1] == 0 and bool((s[:-1] > s[1:]).all()), name
    assert SAMPLERS["euler_edm"][1].sigmas()[0] == pytest.approx(700.0)


def test_fixed_generator_is_reproducible_and_inputs_are_untouched():
    bb = ConvDenoiser(width=8, resolution=(8, 8))
    cfg = SamplerConfig(DdimSchedule(6, "trailing"), eta=1.0)
    x_init = torch.randn(1, 2, 3, 8, 8)
    noise = torch.randn(1, 2, 3, 8, 8)
    keep = (x_init.clone(), noise.clone())
    sched = strength_sigmas(cfg.sigmas(), 0.5)
    runs = [sample(bb, sched, x_init=x_init, noise=noise, eta=1.0,
                   generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(x_init, keep[0]) and torch.equal(noise, keep[1])
    other = sample(bb, sched, x_init=x_init, noise=noise, eta=1.0, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(runs[0], other)


def test_step_noise_replaces_the_generator_draws_and_carries_its_correlation():
    """``step_noise(m)`` is the noise step ``m`` adds: replaying the generator's own draws through it gives
    the same sample bit for bit, and with the same starting and step noise in two frames of the same
    distribution (flow-warped noise over a static scene) the ancestral sampler gives both frames the same
    sample, where the generator's independent draws do not; a wrongly shaped draw is refused."""
    sigmas = DdimSchedule(6, "trailing", zero_terminal_snr=True).sigmas()
    bb = GaussianDataDenoiser(MEAN.double(), VAR.double())
    shape = (3, 2, 8, 1, 1)
    start = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = sample(bb, sigmas, noise=start, eta=1.0, generator=torch.Generator().manual_seed(5))
    replay = torch.Generator().manual_seed(5)
    calls = []

    def replayed(m):
        calls.append(m)
        return torch.randn(shape, generator=replay, dtype=torch.float64)
    assert torch.equal(sample(bb, sigmas, noise=start, eta=1.0, generator=torch.Generator().manual_seed(1),
                              step_noise=replayed), plain)
    assert calls == list(range(6))
    assert (plain[:, 0] - plain[:, 1]).abs().max() > 0.1  # independent step noise: the frames differ
    g = torch.Generator().manual_seed(2)
    same = start[:, :1].expand(shape)
    tied = sample(bb, sigmas, noise=same, eta=1.0, generator=g,
                  step_noise=lambda m: torch.randn(3, 1, 8, 1, 1, generator=g, dtype=torch.float64).expand(shape))
    assert torch.equal(tied[:, 0], tied[:, 1])
    assert (tied - sample(bb, sigmas, noise=same, eta=0.0)).abs().max() > 0.1  # the step noise was used
    with pytest.raises(InputError, match="step noise has shape"):
        sample(bb, sigmas, noise=start, eta=1.0, step_noise=lambda m: torch.zeros(1, 2, 8, 1, 1))


def test_progress_is_reported_every_step():
    seen = []
    sample_with(SamplerConfig(EdmSchedule(5)), GaussianDataDenoiser(), shape=(1, 1, 3, 4, 4),
                generator=torch.Generator().manual_seed(0), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 5) for i in range(1, 6)]


def test_frozen_until_k_leaves_elements_untouched_then_denoises_them():
    steps, k = 10, 6
    sigmas = EdmSchedule(steps, sigma_max=80.0).sigmas()
    start = torch.zeros(1, 2, 1, 4, 4, dtype=torch.long)
    start[:, :, :, :2] = k          # top half frozen until step k
    start[:, 0] = steps             # frame 0 is clean context throughout
    sched = frozen_until(sigmas, start)
    g = torch.Generator().manual_seed(0)
    x_init = torch.randn(1, 2, 3, 4, 4, generator=g)
    bb = GaussianDataDenoiser(0.2, 0.5)
    snapshots = []

    class Spy:
        def wants_grad(self, step, steps):
            return False

        def before_denoise(self, state):
            snapshots.append(state.x.clone())

        def after_step(self, state):
            return None

    noise = torch.randn(x_init.shape, generator=g)
    out = sample(bb, sched, x_init=x_init, noise=noise, generator=g, hooks=[Spy()])
    first = snapshots[0]
    # every element starts at x_init + sigma_start * eps; frozen rows stay bitwise unchanged up to step k
    assert torch.equal(first, x_init + align_sigma(sched[0], x_init) * noise)
    assert float(align_sigma(sched[0], x_init)[0, 1, 0, 0, 0]) == float(sigmas[k])
    for m, snap in enumerate(snapshots):
        if m <= k:
            assert torch.equal(snap[:, 1, :, :2], first[:, 1, :, :2]), m
        else:
            assert not torch.equal(snap[:, 1, :, :2], first[:, 1, :, :2]), m
    assert torch.equal(out[:, 0], x_init[:, 0])  # the context frame never moves
    assert (out[:, 1] - first[:, 1]).abs().max() > 0.1  # ...and the frozen rows are denoised later


def test_per_element_schedule_needs_a_per_element_backbone():
    sched = frozen_until(EdmSchedule(4).sigmas(), torch.tensor([[0, 2]]).view(1, 2))
    bb = GaussianDataDenoiser(per_element_sigma=False)
    with pytest.raises(ConfigError, match="per-frame or per-token"):
        sample(bb, sched, x_init=torch.zeros(1, 2, 3, 4, 4), generator=torch.Generator().manual_seed(0))


def test_strength_starts_from_partially_noised_latents():
    sigmas = EdmSchedule(20).sigmas()
    tail = strength_sigmas(sigmas, 0.3)
    assert tail.shape[0] == 20 - 14 + 1 and tail[0] == sigmas[14]
    x_init = torch.full((1, 1, 3, 4, 4), 0.7)
    bb = GaussianDataDenoiser(0.0, 1e-4)  # nearly a point mass at 0: the sampler must move there
    out = sample(bb, tail, x_init=x_init, generator=torch.Generator().manual_seed(0))
    assert out.abs().max() < 0.05


def test_bad_inputs_raise_clear_errors():
    bb = GaussianDataDenoiser()
    with pytest.raises(ConfigError, match="shape"):
        sample(bb, EdmSchedule(3).sigmas())
    with pytest.raises(ConfigError, match="x_init"):
        sample(bb, frozen_until(EdmSchedule(3).sigmas(), torch.tensor([0, 1])), shape=(2, 1, 3, 2, 2))
    with pytest.raises(ConfigError, match="left-align"):
        sample(bb, torch.ones(4, 3) * torch.tensor([3.0, 2.0, 1.0, 0.0]).view(4, 1), shape=(2, 1, 3, 2, 2))


def test_backbone_receives_compact_sigmas():
    seen = []

    class Spy(GaussianDataDenoiser):
        def denoise(self, x, sigma, cond):
            seen.append(tuple(sigma.shape))
            return super().denoise(x, sigma, cond)

    bb = Spy()
    x_init = torch.zeros(2, 3, 3, 4, 4)
    sample(bb, EdmSchedule(2).sigmas(), shape=(2, 3, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    per_frame = frozen_until(EdmSchedule(2).sigmas(), torch.tensor([[0, 1, 2]]))  # [S+1, 1, 3]
    sample(bb, per_frame, x_init=x_init, generator=torch.Generator().manual_seed(0))
    per_token = frozen_until(EdmSchedule(2).sigmas(), torch.randint(0, 2, (1, 3, 1, 4, 4)))
    sample(bb, per_token, x_init=x_init, generator=torch.Generator().manual_seed(0))
    # per token: step 1 has every token at sigma_1 again, so it is handed over as [B]
    assert seen == [(2,), (2,), (2, 3), (2, 3), (2, 3, 1, 4, 4), (2,)]


@pytest.mark.parametrize(("name", "reference"), [
    ("ddim", dict(timestep_spacing="trailing", rescale_betas_zero_snr=True)),  # ViewCrafter's uniform_trailing
    ("ddim_leading", dict(timestep_spacing="leading", steps_offset=1)),  # Stable Diffusion's
])
def test_ddim_presets_take_diffusers_timesteps_and_noise_levels(name, reference):
    from diffusers import DDIMScheduler

    from vdm3d.diffusion.parameterizations import sigma_from_alpha_bar

    ref = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, **reference)
    ref.set_timesteps(50)
    schedule = SAMPLERS[name][1].schedule
    assert torch.equal(schedule.timesteps(), ref.timesteps)
    ab = ref.alphas_cumprod.double().clone()
    ab[-1] = max(float(ab[-1]), 2.0**-24)  # zero terminal SNR: the last alpha-bar is clamped, as diffusers does
    expected = sigma_from_alpha_bar(torch.cat([ab[ref.timesteps], torch.ones(1, dtype=torch.float64)]))
    torch.testing.assert_close(schedule.sigmas(), expected.float(), rtol=1e-4, atol=1e-6)
    assert (ref.timesteps[0] == 999) == (name == "ddim")  # trailing starts at the last training step
