"""The external scorer protocol (graftbench/tasks/t2i/scorer.py <-> scorers/protocol.py), with stand-in
scorers run as real child processes."""

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from graftbench.tasks.t2i.scorer import ScorerError, ScorerProcess

SCORERS = Path(__file__).resolve().parents[1] / "scorers"


def stand_in(tmp_path, body, name="stand_in.py"):
    """A scorer script: `body` defines score(images, prompts) and may call refuse()."""
    path = tmp_path / name
    path.write_text(
        f"import sys\nsys.path.insert(0, {str(SCORERS)!r})\n"
        "from protocol import refuse, serve\n"
        + textwrap.dedent(body)
        + "\nserve(score, name='stand-in', version='1.2')\n"
    )
    return [sys.executable, str(path)]


MEAN = """
import numpy as np
from PIL import Image

def score(images, prompts):
    return [np.asarray(Image.open(p)).mean() / 255 + len(t) for p, t in zip(images, prompts)]
"""


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)


def test_scores_come_back_in_order_over_several_batches(tmp_path):
    with ScorerProcess(stand_in(tmp_path, MEAN), log=tmp_path / "scorer.log") as scorer:
        assert (scorer.name, scorer.version) == ("stand-in", "1.2")
        for seed, prompts in enumerate([["a", "bb", "ccc"], ["dddd"]]):
            batch = images(len(prompts), seed)
            want = batch.reshape(len(batch), -1).mean(1) / 255 + [len(p) for p in prompts]
            np.testing.assert_allclose(scorer.score(batch, prompts), want, rtol=1e-12)
    assert not list(Path(scorer._tmp.name).parent.glob(Path(scorer._tmp.name).name))


def test_reward_takes_prompt_objects_and_strings(tmp_path):
    class Prompt:
        text = "xy"

    with ScorerProcess(stand_in(tmp_path, MEAN), log=tmp_path / "scorer.log") as scorer:
        scores = scorer.reward()(images(2), [Prompt(), "xy"])
    assert scores.shape == (2,) and scores.dtype == np.float64 and (scores >= 2).all()


def test_a_scorer_that_cannot_load_says_why(tmp_path):
    body = (
        "refuse('t2v-metrics is not installed: pip install t2v-metrics')\ndef score(i, p): pass\n"
    )
    with pytest.raises(ScorerError, match="pip install t2v-metrics"):
        ScorerProcess(stand_in(tmp_path, body), log=tmp_path / "scorer.log")


def test_vqascore_without_t2v_metrics_names_what_to_install(tmp_path):
    # this environment has no t2v-metrics, as on CI: the real script must refuse, not crash
    cmd = [
        sys.executable,
        str(SCORERS / "vqascore.py"),
        "--cache-dir",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    with pytest.raises(ScorerError, match=r"pip install t2v-metrics"):
        ScorerProcess(cmd, log=tmp_path / "scorer.log")


def test_an_error_while_scoring_fails_with_the_scorers_message(tmp_path):
    body = "def score(images, prompts):\n    raise RuntimeError('CUDA out of memory')\n"
    with ScorerProcess(stand_in(tmp_path, body), log=tmp_path / "scorer.log") as scorer:
        with pytest.raises(ScorerError, match="RuntimeError: CUDA out of memory") as err:
            scorer.score(images(1), ["a"])
    assert "in score" in str(err.value)  # the tail of its traceback, from its log


def test_a_scorer_that_dies_is_reported_with_its_exit_status_and_log(tmp_path):
    body = "import os\ndef score(images, prompts):\n    print('dying', file=sys.stderr, flush=True)\n    os._exit(7)\n"
    with ScorerProcess(stand_in(tmp_path, body), log=tmp_path / "scorer.log") as scorer:
        with pytest.raises(
            ScorerError, match=r"(?s)exited with status 7 while scoring batch 1.*dying"
        ):
            scorer.score(images(1), ["a"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def score(images, prompts):\n    return [0.5]\n", "asked for 2 scores, got 1"),
        ("def score(images, prompts):\n    return [0.5, float('nan')]\n", "not a finite number"),
    ],
)
def test_wrong_answers_are_errors(tmp_path, body, message):
    with ScorerProcess(stand_in(tmp_path, body), log=tmp_path / "scorer.log") as scorer:
        with pytest.raises(ScorerError, match=message):
            scorer.score(images(2), ["a", "b"])


def test_a_missing_command_is_named(tmp_path):
    with pytest.raises(ScorerError, match="'/no/such/python' cannot start"):
        ScorerProcess(["/no/such/python", "x.py"], log=tmp_path / "scorer.log")


def test_a_scorer_that_prints_to_stdout_breaks_the_protocol_clearly(tmp_path):
    body = "print('loading weights...')\ndef score(i, p): pass\n"
    with pytest.raises(ScorerError, match="not JSON while starting: 'loading weights"):
        ScorerProcess(stand_in(tmp_path, body), log=tmp_path / "scorer.log")
