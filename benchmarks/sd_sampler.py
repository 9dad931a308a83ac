"""Our Stable Diffusion sampler against diffusers' StableDiffusionPipeline (issue 7).

Both run the same components (SD 2.1-base configs with random weights: speed does not depend
on the weights), the same prompts, latents, DDIM steps and guidance. Ours is how the suite
samples SD: `StableDiffusionAdapter.guided` inside `sampling.diffusion.sample_diffusion`, then
the VAE decode; with `--compile` it adds the adapter's speed options (channels_last, then
torch.compile of the UNet). Prints images/s, the speedup over the pipeline (median of
back-to-back ratios), the largest difference between the images, and FLOP utilisation against
a dense matmul of the same dtype measured in the same run.

    python benchmarks/sd_sampler.py --device cuda               # 512 px, 50 steps, bf16
    python benchmarks/sd_sampler.py --device cuda --compile
    python benchmarks/sd_sampler.py --size tiny --dtype float32 --steps 4   # CPU check, seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graftbench import flops  # noqa: E402
from graftbench.sampling.diffusion import sample_diffusion  # noqa: E402
from graftbench.tasks.t2i.network import Text2ImageNetwork  # noqa: E402
from graftbench.tasks.t2i.stable_diffusion import (  # noqa: E402
    DTYPES,
    StableDiffusionAdapter,
    StableDiffusionConfig,
    speed_options,
)
from graftbench.tasks.t2i.tokenizer import write_clip_tokenizer  # noqa: E402

PROMPTS = [
    "a red circle left of a blue square",
    "two green triangles",
    "a large yellow square",
    "a small purple circle above a red triangle",
]

# SD 2.1-base (stabilityai/stable-diffusion-2-1-base) configs; the tiny size checks the script
SIZES = {
    "sd21-base": dict(
        image=512,
        tokens=77,
        unet=dict(
            sample_size=64,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=1024,
            attention_head_dim=(5, 10, 20, 20),
            norm_num_groups=32,
        ),
        text=dict(
            vocab_size=49408,
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=23,
            num_attention_heads=16,
            hidden_act="gelu",
            projection_dim=512,
        ),
        vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
    ),
    "tiny": dict(
        image=16,
        tokens=16,
        unet=dict(
            sample_size=8,
            layers_per_block=1,
            block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=16,
            attention_head_dim=2,
            norm_num_groups=4,
        ),
        text=dict(
            vocab_size=None,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
        vae=dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4),
    ),
}


def components(size: str):
    s = SIZES[size]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        # the grammar's tokenizer (no download); only the embedding table's size matters for speed
        write_clip_tokenizer(tmp, model_max_length=s["tokens"])
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    text_kw = {**s["text"], "vocab_size": s["text"]["vocab_size"] or len(tokenizer)}
    text = CLIPTextModel(
        CLIPTextConfig(
            **text_kw,
            max_position_embeddings=s["tokens"],
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    n = len(s["vae"]["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        latent_channels=4,
        sample_size=s["image"],
        **s["vae"],
    )
    unet = UNet2DConditionModel(
        in_channels=4, out_channels=4, use_linear_projection=True, **s["unet"]
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    return unet, vae, text, tokenizer, scheduler


def matmul_flops(device: str, dtype: torch.dtype) -> float:
    n = 8192 if device.startswith("cuda") else 2048
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    times = []
    for _ in range(4):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times[1:])


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=list(SIZES), default="sd21-base")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="bfloat16")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=8, help="images per call (prompts repeat)")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--compile", action="store_true", help="add ours+compile (channels_last, torch.compile)"
    )
    args = p.parse_args()
    dtype, dev = DTYPES[args.dtype], args.device
    if dev.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name()}")
    print(
        f"torch {torch.__version__}; {args.size}, batch {args.batch}, {args.steps} DDIM steps, "
        f"guidance {args.guidance}, {args.dtype}, {dev}"
    )

    unet, vae, text, tokenizer, scheduler = components(args.size)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(dev, dtype)
    pipe.set_progress_bar_config(disable=True)
    cfg = StableDiffusionConfig(path="<in memory>", dtype=args.dtype, guidance_scale=args.guidance)
    network = Text2ImageNetwork(pipe.unet, pipe.text_encoder, pipe.vae).requires_grad_(False)
    ours = StableDiffusionAdapter(network, tokenizer, cfg, dict(scheduler.config))
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.batch)]
    latents = torch.randn(
        args.batch, *ours.sample_shape, generator=torch.Generator().manual_seed(0)
    )
    latents = latents.to(dev)

    @torch.no_grad()
    def run_pipe():
        return pipe(
            prompts,
            latents=latents.to(dtype),
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            eta=0.0,
            output_type="pt",
        ).images.float()

    def sampler(model: StableDiffusionAdapter):
        """How the suite samples SD: guided DDIM in sample_diffusion, then the VAE decode."""

        @torch.no_grad()
        def run():
            cond = model.encode_condition(prompts)
            traj = sample_diffusion(
                model.guided(cond),
                model.scheduler("ddim"),
                latents.clone(),
                num_steps=args.steps,
                generator=torch.Generator(dev).manual_seed(0),
            )
            return model.decode(traj.sample)

        return run

    run_ours = sampler(ours)
    contenders = {"diffusers": run_pipe, "ours": run_ours}
    # FLOPs of one sample: the guided UNet calls, the text encoder and the VAE decode
    with torch.no_grad():
        guided = ours.guided(ours.encode_condition(prompts[:1]))  # encodes "" too, uncounted
    with flops.counter() as fc, torch.no_grad():
        guided(latents[:1], torch.tensor([500], device=dev))  # the conditional/unconditional pair
    per_step = fc.get_total_flops()
    with flops.counter() as fc, torch.no_grad():
        ours.encode_condition(prompts[:1])
        ours.decode(latents[:1])
    flops_per_image = per_step * args.steps + fc.get_total_flops()

    reference = run_pipe()  # also warms up both
    diffs = {"ours": (run_ours() - reference).abs().max().item()}
    compile_s = None
    if args.compile:
        t0 = time.perf_counter()
        unet2 = UNet2DConditionModel.from_config(pipe.unet.config).to(dev, dtype)
        unet2.load_state_dict(pipe.unet.state_dict())
        speed_options(unet2, StableDiffusionConfig(channels_last=True, compile=True))
        fast = StableDiffusionAdapter(
            Text2ImageNetwork(unet2, pipe.text_encoder, pipe.vae),
            tokenizer,
            cfg,
            dict(scheduler.config),
        )

        run_fast = sampler(fast)
        diffs["ours+compile"] = (run_fast() - reference).abs().max().item()
        sync(dev)
        compile_s = time.perf_counter() - t0
        contenders["ours+compile"] = run_fast

    times = {name: [] for name in contenders}
    peaks = []
    for r in range(args.repeats):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            sync(dev)
            t0 = time.perf_counter()
            contenders[name]()
            sync(dev)
            times[name].append(time.perf_counter() - t0)
        peaks.append(matmul_flops(dev, dtype))
    peak = statistics.median(peaks)
    print(
        f"matmul peak ({args.dtype}): {peak / 1e12:.2f} TFLOP/s; "
        f"{flops_per_image / 1e12:.3f} TFLOP per image"
    )
    print(
        f"{'sampler':<14} {'images/s':>9} {'vs diffusers':>13} {'FLOP util':>10} {'max |diff|':>11}"
    )
    for name, ts in times.items():
        rate = args.batch / statistics.median(ts)
        ratio = statistics.median(d / o for d, o in zip(times["diffusers"], ts, strict=True))
        util = rate * flops_per_image / peak
        diff = f"{diffs[name]:.2e}" if name in diffs else "-"
        print(f"{name:<14} {rate:>9.3f} {ratio:>12.2f}x {util:>9.1%} {diff:>11}")
    if compile_s is not None:
        print(f"compile + first run of ours+compile: {compile_s:.1f} s")


if __name__ == "__main__":
    main()
