"""Absorbing-state (masked) discrete diffusion over token sequences: the probability path,
the ancestral sampler, the transition log-density and the losses, kept apart from the
network (STYLE habit 5).

The forward process is D3PM's absorbing state (Austin et al. 2021, "Structured Denoising
Diffusion Models in Discrete State-Spaces", sec. 3.1) in MDLM's form (Sahoo et al. 2024,
"Simple and Effective Masked Diffusion Language Models", sec. 2-3): each token of x_0 is,
independently of the others and of its value, kept with probability alpha_t and otherwise
replaced by MASK, so x_t^l = x_0^l w.p. alpha_t, MASK w.p. 1 - alpha_t. Masking is
monotone in t: a token masked at t is masked at every later time.

The reverse step from t to s < t under MDLM's SUBS parameterisation (sec. 3.2: the model
never predicts MASK and copies unmasked tokens): an unmasked token is copied; a masked one
is unmasked w.p. (alpha_s - alpha_t) / (1 - alpha_t), to a token drawn from the model's
prediction softmax(logits), and stays masked otherwise. That is the true posterior
q(x_s | x_t, x_0) with x_0 replaced by the model's per-position distribution.

PAD is an ordinary token here: it is masked and predicted like any other, so the model
learns where a molecule ends; MASK is the only special id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any, Literal

import torch

from graftbench.sampling.diffusion import Trajectory

# (x (batch, L) long, t (batch,) long) -> logits (batch, L, V)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MaskedScheduler:
    """Discrete timesteps t = 0..T-1 with alphas_cumprod[t] = alpha_t, the probability a
    token is still unmasked at t (MDLM's alpha_t; the analogue of DDPM's alpha_bar).

    linear: alpha_t = 1 - (t + 1) / T (MDLM's log-linear schedule, discretised);
    cosine: alpha_t = cos(pi/2 (t + 1) / T), slower masking at small t.
    Both reach alpha_{T-1} = 0 exactly (x_{T-1} is all MASK), and the time before t = 0
    (t = -1, `alpha(-1)`) is clean, alpha = 1, which the sampler's last step lands on.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        schedule: Literal["linear", "cosine"] = "linear",
        mask_id: int = 1,
    ):
        if num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps: {num_train_timesteps} must be at least 2")
        frac = torch.arange(1, num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
        if schedule == "linear":
            alphas = 1 - frac
        elif schedule == "cosine":
            alphas = torch.cos(0.5 * math.pi * frac)
        else:
            raise ValueError(f"schedule: {schedule!r}; choose 'linear' or 'cosine'")
        alphas[-1] = 0.0  # cos(pi/2) is 6e-17 in float64, not 0: x_{T-1} must be all MASK
        self.alphas_cumprod = alphas  # (T,) float64, strictly decreasing
        self.mask_id = mask_id
        self.config = SimpleNamespace(
            num_train_timesteps=num_train_timesteps, schedule=schedule, mask_id=mask_id
        )
        self.num_inference_steps: int | None = None
        self.timesteps: torch.Tensor | None = None

    def set_timesteps(self, num_steps: int, device: torch.device | str | None = None) -> None:
        """timesteps (num_steps,) long, descending: t_i = T-1 - i (T // num_steps), so the
        first step starts from the all-MASK x_{T-1}."""
        T = self.config.num_train_timesteps
        if not 1 <= num_steps <= T:
            raise ValueError(f"num_steps: {num_steps} must lie in 1..{T}")
        self.num_inference_steps = num_steps
        self.timesteps = (T - 1 - torch.arange(num_steps) * (T // num_steps)).to(device)

    def prev_timestep(self, t: int | torch.Tensor) -> int:
        """The timestep a step from t lands on: t - T // num_steps, except that the last
        timestep lands on -1 (clean, alpha = 1) even when T is not a multiple of num_steps."""
        if self.timesteps is None:
            raise RuntimeError("prev_timestep: call set_timesteps first")
        t = int(t)
        if t <= int(self.timesteps[-1]):
            return -1
        return t - self.config.num_train_timesteps // self.num_inference_steps

    def alpha(self, t: int | torch.Tensor) -> float:
        """alpha_t as a Python float; t < 0 is the clean time, alpha = 1."""
        t = int(t)
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def add_mask(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        generator: torch.Generator,
        keep_prob: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forward process: x0 (batch, L) long, t (batch,) -> x_t (batch, L), each token kept
        w.p. alphas_cumprod[t] (or `keep_prob` (batch,) when given), else MASK. PAD is masked
        like any token. Uniforms come from `generator` on its own device (the CPU in
        training, as `losses.denoising_loss`) and move to x0's device."""
        if keep_prob is None:
            keep_prob = self.alphas_cumprod[torch.as_tensor(t).cpu()]
        u = torch.rand(
            x0.shape, generator=generator, device=generator.device, dtype=torch.float64
        ).to(x0.device)
        # u < 1 always, so alpha = 1 keeps every token and alpha = 0 masks every one
        keep = u < keep_prob.to(x0.device, torch.float64).reshape(-1, 1)
        return torch.where(keep, x0, torch.full_like(x0, self.mask_id))

    def _rates(self, t) -> tuple[float, float]:
        """(log P(stay masked), log P(unmask)) of a masked token stepping from t to prev(t)."""
        a_t, a_s = self.alpha(t), self.alpha(self.prev_timestep(t))
        stay = math.log((1 - a_s) / (1 - a_t)) if a_s < 1 else -math.inf
        move = math.log((a_s - a_t) / (1 - a_t)) if a_s > a_t else -math.inf
        return stay, move

    def _no_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """float64 logits with the MASK entry at -inf (SUBS: MASK is never predicted)."""
        out = logits.double().clone()
        out[..., self.mask_id] = -math.inf
        return out

    def step(
        self,
        logits: torch.Tensor,
        t: int | torch.Tensor,
        x: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Ancestral step from t to s = prev(t): logits (batch, L, V) at (x, t), x (batch, L)
        -> x_s (batch, L). Unmasked tokens are copied; each masked one is unmasked w.p.
        (alpha_s - alpha_t) / (1 - alpha_t) (1 at the last step, alpha_s = 1) to a token
        ~ softmax(logits) with MASK excluded. Randomness only from `generator`, on x's device
        (uniforms for every position, then one token draw for every position: a fixed
        consumption, so a replayed generator replays the step)."""
        a_t, a_s = self.alpha(t), self.alpha(self.prev_timestep(t))
        p_unmask = 1.0 if a_s == 1.0 else (a_s - a_t) / (1 - a_t)
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float64)
        probs = self._no_mask(logits).softmax(-1).reshape(-1, logits.shape[-1])
        drawn = torch.multinomial(probs, 1, generator=generator).view(x.shape)
        unmask = (x == self.mask_id) & (u < p_unmask)
        return torch.where(unmask, drawn, x)

    def log_prob(
        self, logits: torch.Tensor, t: int | torch.Tensor, x: torch.Tensor, nxt: torch.Tensor
    ) -> torch.Tensor:
        """Exact log p(nxt | x) of `step` from t, (batch,) float64, differentiable in
        logits (batch, L, V). Sum over positions masked in x of log((1-alpha_s)/(1-alpha_t))
        if still masked in nxt, else log((alpha_s-alpha_t)/(1-alpha_t)) + log_softmax(
        logits)[nxt] (the first term is 0 at the last step, where unmasking is certain). A
        position unmasked in x that changed, or one still masked after the last step, has
        probability 0 (-inf), so exp(log_prob) sums to 1 over every possible nxt."""
        stay_lp, move_lp = self._rates(t)
        masked, stay = x == self.mask_id, nxt == self.mask_id
        # a still-masked position's token term is discarded; gather a valid id for it so no
        # -inf enters the graph (its gradient is zero through the where anyway)
        idx = nxt.masked_fill(stay, 0 if self.mask_id else 1)
        tok = self._no_mask(logits).log_softmax(-1).gather(-1, idx[..., None]).squeeze(-1)
        per = torch.where(stay, torch.full_like(tok, stay_lp), tok + move_lp)
        per = torch.where(masked, per, torch.zeros_like(per))
        changed = (~masked & (nxt != x)).any(1)
        return per.sum(1).masked_fill(changed, -math.inf)


def sample_masked(
    denoise: Denoiser,
    scheduler: MaskedScheduler,
    x: torch.Tensor,
    *,
    num_steps: int,
    generator: torch.Generator,
    eta: float = 0.0,
    keep: Iterable[int] | None = None,
    start_step: int = 0,
    stop_step: int | None = None,
) -> Trajectory:
    """Run the reverse process from x (batch, L) long, the state entering step start_step
    (all MASK for start_step = 0): `sampling.diffusion.sample_diffusion`'s signature and
    state indexing (state i is the input of step i, state num_steps is x_0).

    denoise: (x (batch, L), t (batch,)) -> logits (batch, L, V). eta is accepted and ignored:
    absorbing diffusion has one ancestral sampler (there is no deterministic DDIM analogue,
    since a MASK must be resolved by a draw). Every step is stochastic, so log_probs is
    (batch, stop_step - start_step) float64 (`MaskedScheduler.log_prob`), for DDPO.
    keep: step indices whose states are kept (None: all); start_step, stop_step: run steps
    [start_step, stop_step) only (P-GRAFT's stitched sampler, two denoisers, one scheduler).
    """
    del eta  # one sampler; see the docstring
    scheduler.set_timesteps(num_steps, device=x.device)
    timesteps = scheduler.timesteps
    stop_step = num_steps if stop_step is None else stop_step
    keep = set(range(num_steps + 1)) if keep is None else set(keep)
    states = {start_step: x} if start_step in keep else {}
    log_probs = []
    for i in range(start_step, stop_step):
        t = timesteps[i]
        logits = denoise(x, t.expand(x.shape[0]))
        nxt = scheduler.step(logits, t, x, generator)
        log_probs.append(scheduler.log_prob(logits, t, x, nxt))
        x = nxt
        if i + 1 in keep:
            states[i + 1] = x
    return Trajectory(
        sample=x,
        timesteps=timesteps[start_step:stop_step],
        states=states,
        log_probs=torch.stack(log_probs, 1) if log_probs else None,
        stochastic_steps=list(range(start_step, stop_step)),
        nfe=stop_step - start_step,
    )


def _masked_ce(logits: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits (batch, L, V) against target (batch, L), averaged per sample
    over the positions `where` (batch, L) bool, then over the batch; a sample with no such
    position contributes 0 (and still counts in the batch mean)."""
    ce = -logits.float().log_softmax(-1).gather(-1, target[..., None]).squeeze(-1)
    ce = torch.where(where, ce, torch.zeros_like(ce))  # not ce * where: -inf * 0 is nan
    return (ce.sum(1) / where.sum(1).clamp(min=1)).mean()


def training_loss(
    model, x0: torch.Tensor, cond: Any, generator: torch.Generator, t_min: int = 0
) -> torch.Tensor:
    """Pre-training's (and GRAFT's) loss: t ~ U{t_min, ..., T-1}, x_t = add_mask(x0, t),
    cross-entropy of model.denoise(x_t, t, cond) against x0 at the positions masked in x_t.

    model: an adapter with `scheduler_obj` (a MaskedScheduler) and `denoise`; x0 (batch, L)
    long on the model's device; t and the masking uniforms from `generator` on the CPU, as
    `losses.denoising_loss`. Returns a scalar.

    Weighting: the mean over a sample's masked positions. MDLM's continuous-time NELBO
    weights the masked positions' summed cross-entropy by -alpha'_t / (1 - alpha_t); for the
    linear schedule that is 1 / (1 - alpha_t) = L / E[#masked], so the per-masked-position
    mean is the NELBO integrand / L with the realised masked count for its expectation. For
    another schedule it is a reweighting over t, and any positive weight per t keeps the
    minimiser, the posterior p(x0^l | x_t) at every masked l. Unmasked positions add
    nothing: SUBS copies them (the model's logits there carry no gradient).
    """
    sched = model.scheduler_obj
    t = torch.randint(t_min, len(sched.alphas_cumprod), (len(x0),), generator=generator)
    xt = sched.add_mask(x0, t, generator)
    t = t.to(x0.device)
    return _masked_ce(model.denoise(xt, t, cond), x0, xt == sched.mask_id)


def intermediate_mask(
    sched: MaskedScheduler, x_i: torch.Tensor, t_i: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """P-GRAFT's noising of an intermediate state x_i (batch, L) at timestep t_i:
    t ~ U{t_i + 1, ..., T-1} (batch,) and x_t (batch, L), each unmasked token of x_i masked
    w.p. 1 - alpha_t / alpha_{t_i}, so x_t has the forward law from x_i (masked stays
    masked). t stays on the CPU, x_t on x_i's device. Split out so tests can see t."""
    T = len(sched.alphas_cumprod)
    if not 0 <= t_i < T - 1:
        raise ValueError(f"intermediate t_i: {t_i} must lie in 0..{T - 2}")
    t = torch.randint(t_i + 1, T, (len(x_i),), generator=generator)
    keep = sched.alphas_cumprod[t] / sched.alpha(t_i)
    return t, sched.add_mask(x_i, t, generator, keep_prob=keep)


def intermediate_loss(
    model, x_i: torch.Tensor, cond: Any, t_i: int, generator: torch.Generator
) -> torch.Tensor:
    """P-GRAFT's loss with the accepted intermediate state x_i (batch, L) at timestep t_i as
    the data (`intermediate_mask`): cross-entropy of model.denoise(x_t, t, cond) against
    x_i's tokens at the positions masked in x_t but unmasked in x_i; per-sample mean, then
    batch mean, as `training_loss`. Returns a scalar.

    Why this target: the fine-tuned model runs the steps from T down to t_I, whose only
    learned ingredient is the token drawn when a masked position l is unmasked at some
    s >= t_I (the unmasking times are fixed by the schedule). Masking is monotone and
    independent of content, so, in the joint law of (x_i, x_t) built from the shaped law
    of x_i and forward masking, unmasked at s implies unmasked at t_I with the same token,
    and conditioning on l's own masking coins does not change that token's law given x_t.
    The cross-entropy minimiser at l is thus q(x_i^l | x_t, l unmasked at t_I): the token
    law the stitched sampler needs to hand the base model states distributed as the
    accepted x_i. Positions masked in x_i have no target and are left out. (The law of
    which positions are masked at t_I is the schedule's and is not learned.)
    """
    sched = model.scheduler_obj
    t, xt = intermediate_mask(sched, x_i, t_i, generator)
    target = (xt == sched.mask_id) & (x_i != sched.mask_id)
    return _masked_ce(model.denoise(xt, t.to(x_i.device), cond), x_i, target)
