"""graftbench: fine-tuning diffusion and flow models by shaping their distributions."""

__version__ = "0.1.0"
