"""Shared helpers: the repository root, the workflow config, a tiny task config, and the
one smoke run of the workflow that every workflow test reads (started in the background as
soon as the tests are collected, so it runs beside the others; the workflow tests run last).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from graftbench.config import to_dict
from graftbench.spec import resolve

ROOT = Path(__file__).resolve().parents[1]


SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW = ["Snakefile", "rules", "config", "tasks", "profiles", "report", "scorers"]
SMOKE: dict = {}  # the shared smoke run: its folder, process and log, once started
# The shared smoke run's tables, kept for tests/cluster (`make test-cluster` after `make test`
# compares the cluster's tables with them instead of running the smoke workflow again)
KEPT_TABLES = ROOT / ".pytest_cache/smoke-tables"


def copy_workflow(dest: Path) -> Path:
    """The workflow's files in `dest`, so a test never touches the user's results/ or locks."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def tree_digest() -> str:
    """A digest of everything a smoke run's tables depend on: the workflow's files and the
    package's code."""
    digest = hashlib.sha256()
    for name in [*WORKFLOW, "graftbench"]:
        src = ROOT / name
        for path in sorted(src.rglob("*")) if src.is_dir() else [src]:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def keep_smoke_tables(wf: Path, kept: Path = KEPT_TABLES) -> None:
    """Keep a finished smoke run's tables under the digest of this tree (only the latest)."""
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(wf / "results/smoke/tables", kept / tree_digest() / "results/smoke/tables")


def kept_smoke_run(kept: Path = KEPT_TABLES) -> Path | None:
    """A folder with results/smoke/tables from a smoke run of this very tree, or None."""
    folder = kept / tree_digest()
    return folder if (folder / "results/smoke/tables").is_dir() else None


def snakemake(
    cwd: Path, *args: str, timeout: int = 1500, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config, items):
    """Workflow tests last; the shared smoke run started now if one of them needs it; tests
    marked gpu skip, with the reason, where torch sees no CUDA device."""
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("workflow") is not None)
    if any("smoke_run" in getattr(item, "fixturenames", ()) for item in items):
        _start_smoke_run()
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch  # here, not at the top: only runs that collect a gpu test pay for it

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu: no CUDA device")
    for item in gpu:
        item.add_marker(skip)


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
    # 16-d features: FID needs more images than feature dimensions, and these runs have 40
    cfg["features"].update(steps=5, dim=16)
    cfg["sample"].update(n_samples=40, batch_size=20)
    return cfg


@pytest.fixture(scope="session")
def sd_folder(tmp_path_factory):
    """SD 2's layout and component classes at toy sizes, random weights, saved by diffusers
    (imports inside: diffusers and transformers take seconds, most tests need neither)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from graftbench.tasks.t2i.tokenizer import write_clip_tokenizer

    folder = tmp_path_factory.mktemp("tiny-sd")
    torch.manual_seed(0)
    write_clip_tokenizer(folder / "tok", model_max_length=16)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tok")
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=16,
        attention_head_dim=2,
        use_linear_projection=True,
    )
    # SD 2.1-base ships a PNDM scheduler config with these settings
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        set_alpha_to_one=False,
        steps_offset=1,
        skip_prk_steps=True,
        prediction_type="epsilon",
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "sd")
    return folder / "sd"


def _start_smoke_run() -> None:
    if SMOKE:
        return
    wf = copy_workflow(Path(tempfile.mkdtemp(prefix="graftbench-smoke-")))
    log = open(wf / "snakemake.log", "w")  # noqa: SIM115 (closed at session end)
    proc = subprocess.Popen(
        [SNAKEMAKE, "--profile", "profiles/smoke"], cwd=wf, stdout=log, stderr=subprocess.STDOUT
    )
    SMOKE.update(wf=wf, proc=proc, log=log)


def pytest_sessionfinish(session, exitstatus):
    if SMOKE:
        SMOKE["proc"].kill()
        SMOKE["proc"].wait()
        SMOKE["log"].close()
        shutil.rmtree(SMOKE["wf"], ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_run() -> Path:
    """The folder of one finished smoke run of the whole workflow (shared: read, don't write
    into its results/)."""
    _start_smoke_run()  # when a test that needs it is run on its own
    code = SMOKE["proc"].wait(timeout=1800)
    SMOKE["log"].flush()
    assert code == 0, (SMOKE["wf"] / "snakemake.log").read_text()[-3000:]
    keep_smoke_tables(SMOKE["wf"])
    return SMOKE["wf"]
