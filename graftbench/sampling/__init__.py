"""Samplers: diffusers-scheduler loops returning trajectories (`diffusion`), and the flow ODE
solver with its inverse (`flow`). Import the submodules directly: `flow` does not pull in
diffusers, which takes seconds to import."""
