"""The unconditional task's typed config (import-light: no diffusers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from graftbench.config import ConfigError, Count, Counts, Positive, Seeds
from graftbench.methods.inc import IncConfig
from graftbench.metrics.feature_net import FeatureNetConfig
from graftbench.models.config import UNetConfig
from graftbench.tasks.unconditional.data import DataConfig
from graftbench.train import TrainConfig


@dataclass
class PretrainConfig(TrainConfig):
    sigma_sampling: Literal["uniform", "logit_normal"] = "logit_normal"  # training-time law


@dataclass
class SampleConfig:
    solver: Literal["euler", "heun"] = "euler"  # ODE solver of the base flow
    steps: Counts = field(default_factory=lambda: [2, 4, 8, 16, 32])  # step counts swept
    shift: Positive = 1.0  # time shift of the sigma grid (1 = uniform)
    n_samples: Count = 1000  # images per run (same as data.n_test, so FID sizes match)
    batch_size: Count = 250  # images per network call


@dataclass
class EvaluateConfig:
    fid_backends: list[Literal["inception", "trained-cnn"]] = field(  # feature networks FID is
        default_factory=lambda: ["trained-cnn"]  # computed with; every table names them
    )


@dataclass
class UnconditionalConfig:
    methods: list[Literal["base", "inc"]] = field(default_factory=lambda: ["base"])  # base: the
    # pre-trained flow at each sample.steps (table unconditional); inc: base plus inverse noise
    # correction at each inc.base_steps x inc.corrector_steps (table inc)
    seeds: Seeds = field(default_factory=lambda: [0, 1, 2])  # sampling seeds per setting
    data: DataConfig = field(default_factory=DataConfig)  # the images and their split
    model: UNetConfig = field(default_factory=UNetConfig)  # the base flow's UNet
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # its pre-training
    features: FeatureNetConfig = field(default_factory=FeatureNetConfig)  # the trained-cnn
    # FID network
    sample: SampleConfig = field(default_factory=SampleConfig)  # the base's sampler sweep
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)  # FID back-ends
    inc: IncConfig = field(default_factory=IncConfig)  # inverse noise correction (methods: inc)

    def user_files(self) -> list[str]:
        """The files you supply that this config reads (the workflow checks they exist)."""
        return [self.data.root] if self.data.dataset == "folder" and self.data.root else []

    def __post_init__(self):
        # the features each FID back-end fits a Gaussian to (2048: metrics.fid.INCEPTION_DIM)
        dims = {"trained-cnn": self.features.dim, "inception": 2048}
        for backend in self.evaluate.fid_backends:
            for key, n in (
                ("sample.n_samples", self.sample.n_samples),
                ("data.n_test", self.data.n_test),
            ):
                if n <= dims[backend]:
                    raise ConfigError(
                        f"unconditional.{key}: {n} images give FID[{backend}] a singular "
                        f"covariance of its {dims[backend]} features; it needs at least "
                        f"{dims[backend] + 1}"
                    )
        if "inc" not in self.methods:
            return
        if self.sample.solver != "euler":
            raise ConfigError(
                f"unconditional.sample.solver: {self.sample.solver!r} cannot be used with method "
                "'inc', which inverts the Euler sampler; choose 'euler'"
            )
        missing = [s for s in self.inc.base_steps if s not in self.sample.steps]
        if missing:
            raise ConfigError(
                f"unconditional.inc.base_steps: {missing[0]} is not in unconditional.sample.steps "
                f"{self.sample.steps}; INC is compared with the base at the same step count"
            )
        for key in ("sample_size", "in_channels"):
            if getattr(self.inc.model, key) != getattr(self.model, key):
                raise ConfigError(
                    f"unconditional.inc.model.{key}: {getattr(self.inc.model, key)} must equal "
                    f"unconditional.model.{key} ({getattr(self.model, key)}): the corrector "
                    "outputs the base model's noise"
                )
