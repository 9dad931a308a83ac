"""Shared helpers: the repository root, the workflow config, a tiny task config."""

from __future__ import annotations

from pathlib import Path

import yaml

from graftbench.config import to_dict
from graftbench.spec import resolve

ROOT = Path(__file__).resolve().parents[1]


def workflow_config(profile: str) -> dict:
    """The workflow config as Snakemake would load it (config.yaml + task specs)."""
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for spec in sorted((ROOT / "tasks").glob("*.yaml")):
        config.update(yaml.safe_load(spec.read_text()))
    config["profile"] = profile
    return config


def tiny_unconditional() -> dict:
    """The smoke preset, shrunk further so each verb runs in about a second."""
    cfg = to_dict(resolve(workflow_config("smoke"), "unconditional"))
    cfg["data"]["n_test"] = 40
    cfg["pretrain"].update(steps=6, checkpoint_every=3, warmup=2, batch_size=8)
    cfg["features"].update(steps=5)
    cfg["sample"].update(n_samples=40, batch_size=20)
    return cfg
