"""Molecule generation: SMILES tokens, an absorbing-state discrete diffusion model, data and metrics."""
