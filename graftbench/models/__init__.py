"""Model adapters: one interface (`base.ModelAdapter`) for every denoiser the suite
fine-tunes; `pixel` holds the small pixel-space UNet models."""
