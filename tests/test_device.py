"""The training verbs' --device (train-features, pretrain, invert, train-corrector).

On the CPU, `--device cpu` must give bit for bit what the default gives: batches and noise
come from fit's CPU generator whatever the device, and the CPU path moves nothing. On a GPU
(marker gpu, skipped without CUDA), a model trained there is stored as CPU tensors that load
and sample on the CPU.
"""

from __future__ import annotations

import json

import pytest
import torch

from graftbench import records
from graftbench.__main__ import main
from graftbench.config import to_dict
from graftbench.spec import resolve
from tests.conftest import tiny_unconditional, workflow_config
from tests.test_train import crash_at

SMILES = [
    "CCO",
    "c1ccccc1",
    "CC(=O)O",
    "CCN",
    "CC(C)O",
    "C1CCCCC1",
    "CC#N",
    "COC",
    "CC=O",
    "c1ccncc1",
    "OC(=O)CN",
    "CCCl",
]


def tiny(task: str) -> dict:
    """The smoke preset of `task`, shrunk so each training verb takes a few steps."""
    if task == "unconditional":
        cfg = tiny_unconditional()
        cfg["inc"]["invert"].update(n_images=20, batch_size=10, max_iters=3)
        cfg["inc"]["train"].update(steps=4, checkpoint_every=2, warmup=1, batch_size=8)
        return cfg
    cfg = to_dict(resolve(workflow_config("smoke"), task))
    cfg["pretrain"].update(steps=4, checkpoint_every=2, warmup=1, batch_size=8)
    if task == "layout":
        cfg["features"]["train"].update(steps=4, checkpoint_every=2, warmup=1, batch_size=8)
    if task == "molecule":
        cfg["evaluate"]["fcd"] = False  # ChemNet statistics: slow, and no verb here needs them
    if task == "t2i":
        cfg["scenes"].update(n_train_per_category=2, n_heldout_per_category=2)
    return cfg


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """task -> (tiny config as JSON, prepare-data's folder), each task's made once."""
    root, made = tmp_path_factory.mktemp("device"), {}

    def get(task: str):
        if task not in made:
            cfg = tiny(task)
            if task == "molecule":  # a few molecules of our own: QM9's canonicalisation takes 20 s
                smi = root / "molecules.smi"
                smi.write_text("\n".join(SMILES) + "\n")
                cfg["data"].update(source="file", file=str(smi), n_test=2)
            c = json.dumps(cfg)
            data = root / task / "data"
            if task != "t2i":  # t2i renders its own scenes
                args = ["prepare-data", "--task", task, "--config", c, "--out", str(data)]
                assert main(args) == 0
            made[task] = c, data
        return made[task]

    return get


def run_twice(args: list[str], out) -> tuple[dict, dict]:
    """The verb's --out checkpoint without --device and with --device cpu."""
    default, cpu = out.with_name(f"default_{out.name}"), out.with_name(f"cpu_{out.name}")
    assert main([*args, "--out", str(default)]) == 0
    assert main([*args, "--device", "cpu", "--out", str(cpu)]) == 0
    return records.load_checkpoint(default), records.load_checkpoint(cpu)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


@pytest.mark.parametrize(
    ("task", "verb"),
    [
        ("unconditional", "train-features"),
        ("unconditional", "pretrain"),
        ("layout", "train-features"),
        ("layout", "pretrain"),
        ("molecule", "pretrain"),
        ("t2i", "pretrain"),
    ],
)
def test_device_cpu_trains_the_default_weights(prepared, tmp_path, task, verb):
    torch.set_num_threads(1)
    c, data = prepared(task)
    args = [verb, "--task", task, "--config", c]
    if task != "t2i":
        args += ["--data", str(data)]
    a, b = run_twice(args, tmp_path / "net.pt")
    assert_same_weights(a, b)
    assert a["device"] == b["device"] == "cpu"
    assert all(v.device.type == "cpu" for v in b["model"].values())


def test_device_cpu_inverts_and_trains_the_corrector_as_the_default(prepared, tmp_path):
    torch.set_num_threads(1)
    c, data = prepared("unconditional")
    model = tmp_path / "model.pt"
    task = ["--task", "unconditional", "--config", c]
    assert main(["pretrain", *task, "--data", str(data), "--out", str(model)]) == 0
    a, b = run_twice(
        ["invert", *task, "--data", str(data), "--model", str(model), "--steps", "2"],
        tmp_path / "noise.pt",
    )
    assert a["noise"].shape[0] == 20 and torch.equal(a["noise"], b["noise"])
    summary = records.read_json(tmp_path / "cpu_noise.json")
    default = records.read_json(tmp_path / "default_noise.json")
    assert summary["device"] == "cpu" and summary["diagnostics"] == default["diagnostics"]
    a, b = run_twice(
        ["train-corrector", *task, "--noise", str(tmp_path / "cpu_noise.pt")],
        tmp_path / "corrector.pt",
    )
    assert_same_weights(a, b)
    assert records.read_json(tmp_path / "cpu_corrector.json")["device"] == "cpu"


# ------------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
def test_unconditional_trains_on_cuda_and_loads_on_cpu(prepared, tmp_path):
    """Every unconditional training verb on cuda; what they store is CPU tensors, and the
    base model samples on the CPU."""
    from graftbench.tasks.unconditional.task import load_model

    c, data = prepared("unconditional")
    cuda = ["--device", "cuda"]
    model, features, noise = tmp_path / "model.pt", tmp_path / "features.pt", tmp_path / "noise.pt"
    args = ["--task", "unconditional", "--config", c, "--data", str(data)]
    assert main(["train-features", *args, "--out", str(features), *cuda]) == 0
    assert main(["pretrain", *args, "--out", str(model), *cuda]) == 0
    invert = ["invert", *args, "--model", str(model), "--steps", "2", "--out", str(noise)]
    assert main([*invert, *cuda]) == 0
    assert (
        main(
            [
                "train-corrector",
                "--task",
                "unconditional",
                "--config",
                c,
                "--noise",
                str(noise),
                "--out",
                str(tmp_path / "corrector.pt"),
                *cuda,
            ]
        )
        == 0
    )
    for name in ("features.pt", "model.pt", "corrector.pt"):
        # safetensors holds no device: every tensor loads on the CPU
        ckpt = records.load_checkpoint(tmp_path / name)
        assert ckpt["device"].startswith("cuda"), name
        assert all(v.device.type == "cpu" for v in ckpt["model"].values()), name
    assert records.load_checkpoint(noise, "inc noise")["noise"].device.type == "cpu"
    assert records.read_json(tmp_path / "noise.json")["device"] == "cuda"
    base = load_model(model, "cpu")
    x = base.velocity(torch.zeros((2, *base.sample_shape)), torch.full((2,), 0.5))
    assert torch.isfinite(x).all()


@pytest.mark.gpu
@pytest.mark.parametrize("task", ["layout", "molecule", "t2i"])
def test_pretrain_on_cuda_loads_on_cpu(prepared, tmp_path, task):
    c, data = prepared(task)
    args = ["pretrain", "--task", task, "--config", c, "--out", str(tmp_path / "model.pt")]
    if task != "t2i":
        args += ["--data", str(data)]
    assert main([*args, "--device", "cuda"]) == 0
    if task == "layout":
        assert (
            main(
                [
                    "train-features",
                    "--task",
                    task,
                    "--config",
                    c,
                    "--data",
                    str(data),
                    "--out",
                    str(tmp_path / "features.pt"),
                    "--device",
                    "cuda",
                ]
            )
            == 0
        )
    ckpt = records.load_checkpoint(tmp_path / "model.pt", f"{task} model")
    assert ckpt["device"].startswith("cuda")
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())


@pytest.mark.gpu
def test_fit_resumes_on_cuda_as_an_unbroken_run(tmp_path):
    """The partial checkpoint carries the CUDA generator too, so dropout on the GPU draws
    the same masks after a resume."""
    from graftbench.train import TrainConfig, fit

    cfg = TrainConfig(
        steps=8, batch_size=4, lr=1e-2, warmup=2, ema_decay=0.9, checkpoint_every=3, seed=3
    )

    def make():
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Linear(3, 64), torch.nn.Dropout(0.5), torch.nn.Linear(64, 1)
        ).cuda()
        target = torch.randn(100, 3)

        def loss(step, g):
            x = target[torch.randint(100, (cfg.batch_size,), generator=g)].cuda()
            return ((net(x).squeeze(1) - x.sum(1)) ** 2).mean()

        return net, loss

    net, loss = make()
    fit(net, loss, cfg, tmp_path / "full.pt", {}, kind="test")
    net, loss = make()
    with pytest.raises(KeyboardInterrupt):
        fit(
            net, crash_at(7, loss), cfg, tmp_path / "resumed.pt", {}, kind="test"
        )  # after step 6's checkpoint
    net, loss = make()  # reseeds the CUDA generator, as a new process would
    fit(net, loss, cfg, tmp_path / "resumed.pt", {}, kind="test")
    a = records.load_checkpoint(tmp_path / "full.pt")["model"]
    b = records.load_checkpoint(tmp_path / "resumed.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k])
