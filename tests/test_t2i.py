"""Compositional T2I data: grammar and split, scene geometry, renderer + verifier, tokenizer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from graftbench.config import ConfigError, parse
from graftbench.tasks.t2i.render import render
from graftbench.tasks.t2i.scenes import (
    BORDER,
    CATEGORIES,
    COLOURS,
    SHAPES,
    Count,
    Entity,
    Relation,
    Scene,
    SceneConfig,
    SceneObject,
    grammar_words,
    make_prompt,
    prompt_pool,
    sample_scene,
    split_prompts,
)
from graftbench.tasks.t2i.verifier import VerifierConfig, verifier_reward, verify

ALL_COLOURS = SceneConfig(colours=list(COLOURS))  # the hardest palette the verifier supports


def random_prompts(cfg: SceneConfig, category: str, n: int, rng) -> list:
    pool = prompt_pool(cfg, category)
    return [pool[i] for i in rng.integers(0, len(pool), n)]


@pytest.mark.parametrize("category", CATEGORIES)
def test_verifier_is_right_on_clean_renders(category):
    rng = np.random.default_rng(0)
    prompts = random_prompts(ALL_COLOURS, category, 150, rng)  # 600 renders over the 4 cases
    correct = [verify(render(sample_scene(p, rng), 32), p).correct for p in prompts]
    assert np.mean(correct) >= 0.99


def test_verifier_tolerates_blur_and_noise():
    """Model samples are softer and noisier than renders: Gaussian blur (0.7 px) + noise."""
    rng = np.random.default_rng(1)
    prompts = [p for c in CATEGORIES for p in random_prompts(ALL_COLOURS, c, 40, rng)]
    correct = []
    for p in prompts:
        img = ndimage.gaussian_filter(render(sample_scene(p, rng)).astype(float), (0.7, 0.7, 0))
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        correct.append(verify(img, p).correct)
    assert np.mean(correct) >= 0.95


def obj(colour, shape, x, y, size=0.28):
    return SceneObject(colour, shape, size, x, y)


RED_CIRCLE, BLUE_SQUARE = Entity("red", "circle"), Entity("blue", "square")


@pytest.mark.parametrize(
    "prompt, good, bad, bad_score",
    [
        # wrong colour, wrong shape
        (
            make_prompt("single", RED_CIRCLE),
            [obj("red", "circle", 0.5, 0.5)],
            [obj("blue", "circle", 0.5, 0.5)],
            0.0,
        ),
        (
            make_prompt("single", RED_CIRCLE),
            [obj("red", "circle", 0.5, 0.5)],
            [obj("red", "square", 0.5, 0.5)],
            0.0,
        ),
        (
            make_prompt("single", BLUE_SQUARE),
            [obj("blue", "square", 0.3, 0.6, 0.2)],
            [obj("blue", "triangle", 0.3, 0.6, 0.2)],
            0.0,
        ),
        # wrong count: one too few, one too many
        (
            make_prompt("counting", BLUE_SQUARE, n=3),
            [obj("blue", "square", x, 0.3, 0.2) for x in (0.2, 0.5, 0.8)],
            [obj("blue", "square", x, 0.3, 0.2) for x in (0.2, 0.5)],
            0.5,
        ),
        (
            make_prompt("counting", BLUE_SQUARE, n=2),
            [obj("blue", "square", x, 0.3, 0.2) for x in (0.2, 0.5)],
            [obj("blue", "square", x, 0.3, 0.2) for x in (0.2, 0.5, 0.8)],
            0.5,
        ),
        # attributes swapped between the objects; a missing object
        (
            make_prompt("colour_attribution", RED_CIRCLE, BLUE_SQUARE),
            [obj("red", "circle", 0.25, 0.5), obj("blue", "square", 0.75, 0.5)],
            [obj("blue", "circle", 0.25, 0.5), obj("red", "square", 0.75, 0.5)],
            0.0,
        ),
        (
            make_prompt("colour_attribution", RED_CIRCLE, BLUE_SQUARE),
            [obj("red", "circle", 0.25, 0.5), obj("blue", "square", 0.75, 0.5)],
            [obj("red", "circle", 0.25, 0.5)],
            0.5,
        ),
    ],
)
def test_verifier_fails_scenes_that_violate_the_prompt(prompt, good, bad, bad_score):
    ok = verify(render(Scene(tuple(good))), prompt)
    assert ok.correct and ok.score == 1.0  # the control: the same layout done right passes
    v = verify(render(Scene(tuple(bad))), prompt)
    assert not v.correct
    assert v.score == pytest.approx(bad_score)


def pair_scene(relation: str, along: float, across: float) -> Scene:
    """A red circle and a blue square, the square offset from the circle by `along` in the
    relation's direction (so the circle stands <relation> the square) and `across` sideways."""
    dx, dy = {
        "left_of": (along, across),
        "right_of": (-along, across),
        "above": (across, along),
        "below": (across, -along),
    }[relation]
    x, y = 0.5 - dx / 2, 0.5 - dy / 2
    return Scene((obj("red", "circle", x, y, 0.2), obj("blue", "square", x + dx, y + dy, 0.2)))


@pytest.mark.parametrize("relation", ["left_of", "right_of", "above", "below"])
def test_verifier_checks_spatial_relations(relation):
    prompt = make_prompt("spatial", RED_CIRCLE, BLUE_SQUARE, relation=relation)
    assert verify(render(pair_scene(relation, 0.5, 0.1)), prompt).correct
    swapped = pair_scene(relation, -0.5, 0.1)
    sideways = pair_scene(relation, 0.25, 0.6)  # mostly across: another relation, not this
    for scene in (swapped, sideways):
        v = verify(render(scene), prompt)
        assert v.results == (True, True, False) and v.score == pytest.approx(2 / 3)


def test_scenes_lie_inside_the_image_apart_and_satisfy_relations():
    rng = np.random.default_rng(2)
    cfg = SceneConfig(max_count=4)
    for p in (p for c in CATEGORIES for p in random_prompts(cfg, c, 50, rng)):
        objs = sample_scene(p, rng).objects
        want = sum(s.n for s in p.statements if isinstance(s, Count)) or len(p.entities)
        assert len(objs) == want
        for o in objs:
            assert BORDER <= o.x - o.size / 2 and o.x + o.size / 2 <= 1 - BORDER
            assert BORDER <= o.y - o.size / 2 and o.y + o.size / 2 <= 1 - BORDER
        for a, b in itertools.combinations(objs, 2):  # boxes disjoint along some axis
            assert max(abs(a.x - b.x), abs(a.y - b.y)) > (a.size + b.size) / 2
        for r in (s for s in p.statements if isinstance(s, Relation)):
            (a,) = [o for o in objs if (o.colour, o.shape) == (r.subject.colour, r.subject.shape)]
            (b,) = [o for o in objs if (o.colour, o.shape) == (r.other.colour, r.other.shape)]
            dx, dy = b.x - a.x, b.y - a.y
            along, across = {
                "left_of": (dx, dy),
                "right_of": (-dx, dy),
                "above": (dy, dx),
                "below": (-dy, dx),
            }[r.relation]
            assert along > (a.size + b.size) / 2 and abs(across) < along


def test_heldout_combinations_only_in_heldout_prompts():
    cfg = SceneConfig(n_train_per_category=1000, n_heldout_per_category=40)
    split = split_prompts(cfg)
    assert split.heldout_entities and split.heldout_pairs
    for p in split.train:
        assert not set(p.entities) & split.heldout_entities
        assert frozenset(e.colour for e in p.entities) not in split.heldout_pairs
        assert not split.is_heldout(p)
    for p in split.heldout:
        pair = {frozenset(e.colour for e in p.entities)} if len(p.entities) == 2 else set()
        assert set(p.entities) & split.heldout_entities or pair & split.heldout_pairs
        assert split.is_heldout(p)
    seen = {e for p in split.heldout for e in p.entities}
    pairs = {
        frozenset(e.colour for e in p.entities) for p in split.heldout if p.category == "spatial"
    }
    assert split.heldout_entities <= seen and split.heldout_pairs <= pairs
    # compositional, not lexical: every colour and shape on its own is trained
    trained = {e for p in split.train for e in p.entities}
    assert {e.colour for e in trained} == set(cfg.colours)
    assert {e.shape for e in trained} == set(cfg.shapes)
    assert {p.category for p in split.heldout} == set(CATEGORIES)


def test_same_seed_same_prompts_scenes_and_images():
    assert split_prompts(SceneConfig()) == split_prompts(SceneConfig())
    assert split_prompts(SceneConfig()) != split_prompts(SceneConfig(split_seed=1))
    p = make_prompt("spatial", RED_CIRCLE, BLUE_SQUARE, relation="above")
    scenes = [sample_scene(p, np.random.default_rng(s)) for s in (5, 5, 6)]
    assert scenes[0] == scenes[1] != scenes[2]
    assert np.array_equal(render(scenes[0]), render(scenes[1]))


@pytest.mark.parametrize("size", [32, 64, 96])
def test_render_shape_and_verifier_at_larger_sizes(size):
    rng = np.random.default_rng(size)
    for c in CATEGORIES:
        for p in random_prompts(SceneConfig(), c, 5, rng):
            img = render(sample_scene(p, rng), size)
            assert img.shape == (size, size, 3) and img.dtype == np.uint8
            assert verify(img, p).correct


def test_garbage_images_never_raise_and_score_low():
    rng = np.random.default_rng(3)
    prompts = [p for c in CATEGORIES for p in random_prompts(ALL_COLOURS, c, 10, rng)]
    n = len(prompts)
    blocks = rng.integers(0, 256, (n, 8, 8, 3))
    garbage = {
        "blank": np.zeros((n, 32, 32, 3)),
        "white": np.full((n, 32, 32, 3), 255),
        "solid red": np.broadcast_to(COLOURS["red"], (n, 32, 32, 3)),
        "uniform noise": rng.integers(0, 256, (n, 32, 32, 3)),
        "colour blocks": np.kron(blocks, np.ones((1, 4, 4, 1))),  # clutter of small squares
        "smooth noise": ndimage.gaussian_filter(rng.normal(128, 400, (n, 32, 32, 3)), (0, 2, 2, 0)),
    }
    reward = verifier_reward()
    for name, images in garbage.items():
        r = reward(np.clip(images, 0, 255).astype(np.uint8), prompts)
        assert r.shape == (n,) and r.dtype == np.float64, name
        assert r.mean() < 0.15, name
    assert verify(np.zeros((1, 1, 3), np.uint8), prompts[0]).score == 0.0
    with pytest.raises(ValueError, match="uint8"):  # a float image would read as black
        verify(np.zeros((32, 32, 3)), prompts[0])


def test_reward_callable_matches_verify():
    rng = np.random.default_rng(4)
    prompts = [p for c in CATEGORIES for p in random_prompts(SceneConfig(), c, 3, rng)]
    images = np.stack([render(sample_scene(p, rng)) for p in prompts])
    images[::2] = images[1::2][: len(images[::2])]  # every other image shows another prompt
    score = verifier_reward()(images, prompts)
    correct = verifier_reward(VerifierConfig(reward="correct"))(images, prompts)
    verdicts = [verify(i, p) for i, p in zip(images, prompts, strict=True)]
    assert np.array_equal(score, [v.score for v in verdicts])
    assert np.array_equal(correct, [float(v.correct) for v in verdicts])
    assert 0 < correct.mean() < 1


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="scenes.image_size: 16 is out of range; allowed: >= 32"):
        parse(SceneConfig, {"image_size": 16}, "scenes")
    with pytest.raises(ConfigError, match="colours\\[1\\]: 'pink' is not allowed"):
        parse(SceneConfig, {"colours": ["red", "pink"]}, "scenes")
    assert parse(SceneConfig, {"shapes": ["circle"]}).shapes == ["circle"]


def test_tokenizer_has_one_token_per_word_and_round_trips(tmp_path):
    from transformers import CLIPTokenizer

    from graftbench.tasks.t2i.tokenizer import write_clip_tokenizer

    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path))
    words = grammar_words()
    assert set(COLOURS) | set(SHAPES) <= set(words)
    for w in words:
        ids = tok(w, add_special_tokens=False).input_ids
        assert tok.convert_ids_to_tokens(ids) == [w + "</w>"]
    texts = [p.text for c in CATEGORIES for p in prompt_pool(ALL_COLOURS, c)]
    batch = tok(texts, padding="max_length", max_length=tok.model_max_length)
    for text, ids in zip(texts, batch.input_ids, strict=True):
        assert ids[0] == tok.bos_token_id and len(ids) == tok.model_max_length
        assert len(tok(text).input_ids) == len(text.split()) + 2  # one token per word
        assert tok.decode(ids, skip_special_tokens=True) == text
    # words outside the grammar fall back to byte-level pieces instead of failing
    odd = "a zebra-striped ünïcode square!"
    ids = tok(odd, add_special_tokens=False).input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids).replace(" ", "") == odd.replace(" ", "")
