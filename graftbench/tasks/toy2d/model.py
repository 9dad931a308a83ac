"""The toy2d base: a v-predicting MLP over 2-D points on the cosine DDPM schedule, sampled with
diffusers' DDIM; and the same sampler seen as a flow, which INC inverts.

Deterministic DDIM is the Euler method of a flow (Song et al. 2021, sec. 4.3; the rectified-flow
reparametrisation of Karras et al. 2022): with a = sqrt(abar_t), s = sqrt(1 - abar_t), the
state y = x / (a + s) at sigma = s / (a + s) lies on y = (1 - sigma) x0 + sigma eps, and one
DDIM step is y' = y + (sigma' - sigma) (eps_hat - x0_hat). So `flow_view` gives the velocity
and sigma grid on which `sampling.flow.solve_flow` reproduces DDIM (eta 0) and
`sampling.flow.invert_euler` inverts it exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from graftbench import records
from graftbench.config import parse, to_dict
from graftbench.models.diffusion import DiffusionAdapter, ddpm_scheduler
from graftbench.tasks.toy2d.config import MLPConfig

KIND = "toy2d model"  # the checkpoint kind (records.save_checkpoint) of this task's models


class MLP(nn.Module):
    """(x (batch, 2), t (batch,) float timesteps) -> (batch, 2)."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.time_dim = cfg.time_dim
        dims = [2 + cfg.time_dim, *[cfg.width] * cfg.depth]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(dims[-1], 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        from diffusers.models.embeddings import get_timestep_embedding

        temb = get_timestep_embedding(t.float(), self.time_dim, flip_sin_to_cos=True)
        return self.net(torch.cat([x, temb.to(x.dtype)], 1))


class Toy2dAdapter(DiffusionAdapter):
    """The `ModelAdapter` of the toy2d base: unconditional, states are the points themselves."""

    prediction_type, sample_shape = "v_prediction", (2,)

    def __init__(self, cfg: MLPConfig):
        self.cfg, self.network = cfg, MLP(cfg)
        self.alphas_cumprod = self.scheduler("ddpm").alphas_cumprod

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        return self.network(x, t)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def scheduler(self, kind: str):
        return ddpm_scheduler(
            kind,
            num_train_timesteps=1000,
            beta_schedule="squaredcos_cap_v2",
            prediction_type="v_prediction",
            timestep_spacing="trailing",
            clip_sample=False,
        )

    def save(self, path: str | Path, config: dict | None = None) -> None:
        state = {"model": self.network.state_dict()}
        config = {**(config or {}), "model": to_dict(self.cfg)}
        records.save_checkpoint(path, state, config, kind=KIND)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Toy2dAdapter:
        ckpt = records.load_checkpoint(path, KIND)
        model = cls(parse(MLPConfig, ckpt["config"]["model"], "model"))
        model.network.load_state_dict(ckpt["model"])
        model.network.to(device).eval()
        return model


def flow_view(model: Toy2dAdapter, num_steps: int):
    """(velocity, sigmas, scale) of deterministic DDIM with `num_steps` steps as a flow:
    `solve_flow(velocity, x_T / scale, sigmas)` equals DDIM (eta 0) from x_T, and
    `invert_euler(velocity, x0, sigmas)` times `scale` is the x_T it comes from."""
    sched = model.scheduler("ddim")
    sched.set_timesteps(num_steps)
    abar = model.alphas_cumprod.double()
    a, s = abar[sched.timesteps].sqrt(), (1 - abar[sched.timesteps]).sqrt()
    sigmas = torch.cat([s / (a + s), torch.zeros(1, dtype=torch.float64)]).float()
    timestep = dict(zip(sigmas[:-1].tolist(), sched.timesteps.tolist(), strict=True))

    def velocity(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = timestep[sigma[0].item()]  # called on the grid only
        ab = abar[t]
        at, st = ab.sqrt().item(), (1 - ab).sqrt().item()
        x = (at + st) * y
        v = model.denoise(x, torch.full((len(y),), t, device=y.device))
        x0, eps = at * x - st * v, st * x + at * v
        return eps - x0

    return velocity, sigmas, (a[0] + s[0]).item()
