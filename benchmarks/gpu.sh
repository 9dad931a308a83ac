#!/usr/bin/env bash
# The GPU check, run on a lent GPU machine through the device tool (see BENCHMARKS.md):
#   carry: .whl (diffusers 0.42.1 + importlib_metadata wheels, which that image lacks), made
#   here with: python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 importlib_metadata
# It installs the carried wheels, prints the card, then runs the sampler benchmark on CUDA.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
python3 benchmarks/sampler_throughput.py --device cuda "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_bench.txt"
# Stable Diffusion 2.1-base sizes against StableDiffusionPipeline (needs transformers too:
# carry its wheel if the image lacks it)
python3 benchmarks/sd_sampler.py --device cuda --compile 2>&1 | tee "${OUT:-/tmp}/sd_bench.txt"
# The small tasks' workflow on the GPU profile at smoke sizes, when this image has the
# workflow's packages (snakemake, rdkit, clean-fid, ...: `pip install -e .`); it prints the
# job count and wall time. Without them it says so and stops here.
if python3 -c "import snakemake, rdkit, cleanfid, peft" 2>/dev/null; then
    start=$(date +%s)
    python3 -m snakemake --cores 8 --profile profiles/gpu --config profile=smoke device=cuda \
        results="${OUT:-/tmp}/results" 2>&1 | tail -5 | tee "${OUT:-/tmp}/workflow_gpu.txt"
    echo "smoke workflow on the GPU profile: $(( $(date +%s) - start )) s" | tee -a "${OUT:-/tmp}/workflow_gpu.txt"
else
    echo "workflow on the GPU profile: skipped (this image lacks snakemake/rdkit/clean-fid/peft)"
fi
