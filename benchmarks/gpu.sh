#!/usr/bin/env bash
# The GPU check, run on a lent GPU machine through the device tool (see BENCHMARKS.md), with
# `carry: [.whl]`: the wheels that machine's image lacks, made here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl diffusers==0.42.1 importlib_metadata scipy==1.17.1 selfies==2.2.0 \
#     clean-fid==0.1.35 mlxtend==0.25.0
# (42 MB; the image's newer scipy breaks clean-fid, hence the pinned one. rdkit and qm9pack,
# 135 MB, do not fit the 64 MiB a call carries: the molecule GPU test is skipped.)
# The workflow part needs snakemake 9.27.1 and the 38 of its dependencies the image lacks,
# downloaded the same way (add --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64):
#   snakemake==9.27.1 snakemake-interface-common snakemake-interface-executor-plugins
#   snakemake-interface-logger-plugins snakemake-interface-report-plugins
#   snakemake-interface-scheduler-plugins snakemake-interface-storage-plugins
#   annotated-types argparse-dataclass conda-inject configargparse docutils dpath
#   fastjsonschema gitdb gitpython greenlet humanfriendly immutables jsonschema
#   jsonschema-specifications jupyter-core nbformat platformdirs pulp pydantic pydantic-core
#   referencing rpds-py smart-open smmap sqlalchemy sqlmodel tenacity throttler traitlets
#   typing-inspection yte connection-pool
# connection-pool 0.0.3 is source-only (`pip wheel --no-deps connection-pool==0.0.3`), and
# pulp's wheel bundles CBC for every platform (16 MB): keep only pulp/solverdir/cbc/linux/
# x86_64 in it, or the wheels exceed what a call carries (all together then: 55 MB).
# Each part runs under its own time limit and a failing part does not stop the next; logs go
# to $OUT. Parts: the `gpu` tests, the SD sampler against StableDiffusionPipeline, the pixel
# sampler against a diffusers loop, and the smoke workflow when snakemake is there.
set -uo pipefail
OUT="${OUT:-/tmp}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"

part() {  # part NAME SECONDS COMMAND...: run one part, log it, say how it ended and how long
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "=== $name"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$OUT/$name.txt"
}

part gpu_tests 120 python3 -m pytest -q -m gpu -p no:cacheprovider -k "not molecule" tests/test_device.py
part sd_bench 240 python3 benchmarks/sd_sampler.py --device cuda --compile
part pixel_bench 120 python3 benchmarks/sampler_throughput.py --device cuda --no-ablate "$@"
if python3 -c "import snakemake" 2>/dev/null; then
    # Every task but molecule (its rdkit and qm9pack are not carried, see above); gpu=4: four
    # device jobs at once (profiles/gpu), so the ~60 device jobs fit the part's limit.
    part workflow_gpu 300 python3 -m snakemake --cores 8 --profile profiles/gpu --resources gpu=4 \
        --config profile=smoke device=cuda results="$OUT/results" \
        "tasks=[unconditional, t2i, layout, toy2d]"
else
    echo "workflow on the GPU profile: skipped (this image lacks snakemake)"
fi
