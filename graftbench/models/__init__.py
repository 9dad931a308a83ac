"""What every model the suite samples and fine-tunes offers (`base`: the `FinetuneModel`
Protocol and the `ModelAdapter` defaults; `diffusion`: DDPM-family models), and the pixel
rectified-flow UNet (`pixel`, `config`) that the unconditional task and inverse noise
correction's corrector share. A task's own models live in its package."""
