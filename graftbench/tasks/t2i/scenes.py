"""Compositional scenes for the small text-to-image task: prompt grammar, split and layout
(`render` draws them).

A prompt names coloured shapes and what must hold between them; the verifier
(`graftbench.tasks.t2i.verifier`) checks its `statements` on an image. Categories, after GenEval:
    single              "a red circle"                              Exists
    counting            "three blue squares"                        Exists, Count
    colour_attribution  "a red circle and a blue square"            Exists, Exists
    spatial             "a red circle to the left of a blue square" Exists, Exists, Relation
A scene places each named object once (counting: n times) on a plain dark background, in
image-relative units: x right, y down, both in [0, 1]; `size` is the side of the object's
axis-aligned bounding box. Squares are axis-aligned and triangles upright, so bounding boxes
are exact and "objects do not overlap" is a box test.

The train/held-out split holds out some (colour, shape) combinations and some unordered
colour pairs: a prompt is held out when it contains any of them, so every held-out prompt
asks for a combination that fine-tuning never saw, while each colour and shape on its own
still occurs in training.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np

from graftbench.config import ConfigError, Range, Share

Colour = Literal["red", "green", "blue", "yellow", "purple", "white"]
Shape = Literal["circle", "square", "triangle"]
Category = Literal["single", "counting", "colour_attribution", "spatial"]
RelationName = Literal["left_of", "right_of", "above", "below"]

# Saturated colours whose directions from the background are >= 28 degrees apart (>= 35 for
# the default four), so a pixel blended with the background by antialiasing or blur still
# has one clearly nearest colour.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "purple": (200, 50, 200),
    "white": (235, 235, 235),
}
BACKGROUND = (16, 16, 20)
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.2, "large": 0.28}  # bounding-box side; small is 6.4 px at 32 px
RELATIONS = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "above": "above",
    "below": "below",
}
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
CATEGORIES = ("single", "counting", "colour_attribution", "spatial")
BORDER = 0.03  # objects keep this far from the image edge
GAP = 0.06  # min gap between bounding boxes: ~2 px at 32 px, so same-colour objects never touch
SLOPE = 0.5  # a relation's off-axis offset is at most this times its on-axis offset
AXES = {"left_of": (1, 0), "right_of": (-1, 0), "above": (0, 1), "below": (0, -1)}  # to other


@dataclass
class SceneConfig:
    image_size: Annotated[int, Range(32)] = (
        32  # side of rendered images in pixels (>= 32: accuracy is measured there)
    )
    colours: list[Colour] = field(default_factory=lambda: ["red", "green", "blue", "yellow"])
    # colours prompts use
    shapes: list[Shape] = field(default_factory=lambda: list(SHAPES))  # shapes prompts use
    categories: list[Category] = field(default_factory=lambda: list(CATEGORIES))  # in use
    max_count: Annotated[int, Range(1, 4)] = (
        4  # counting prompts ask for 1..max_count objects (at most 4)
    )
    heldout_fraction: Share = 0.25  # of (colour, shape) combos and of colour pairs held out
    split_seed: int = 0  # seed of the held-out choice and of the prompt subsampling
    n_train_per_category: Annotated[int, Range(1)] = (
        64  # training prompts drawn per category (fewer if pool is)
    )
    n_heldout_per_category: Annotated[int, Range(1)] = (
        32  # held-out prompts drawn per category (fewer if pool is)
    )

    def __post_init__(self):
        for key in ("colours", "shapes", "categories"):
            if not (v := getattr(self, key)) or len(set(v)) != len(v):
                raise ConfigError(f"scenes.{key}: {v} must be non-empty and distinct")
        pairs = {"colour_attribution", "spatial"} & set(self.categories)
        if pairs and len(self.colours) < 2:
            raise ConfigError(f"scenes.colours: {sorted(pairs)} need at least two colours")


@dataclass(frozen=True)
class Entity:
    """A coloured shape that a prompt names."""

    colour: Colour
    shape: Shape


@dataclass(frozen=True)
class Exists:
    entity: Entity  # at least one such object


@dataclass(frozen=True)
class Count:
    entity: Entity
    n: int  # exactly n such objects


@dataclass(frozen=True)
class Relation:
    subject: Entity
    relation: RelationName  # subject <relation> other
    other: Entity


Statement = Exists | Count | Relation


@dataclass(frozen=True)
class Prompt:
    text: str
    category: Category
    statements: tuple[Statement, ...]

    @property
    def entities(self) -> tuple[Entity, ...]:
        """Distinct entities, in order of first mention."""
        out: dict[Entity, None] = {}
        for s in self.statements:
            for e in (s.subject, s.other) if isinstance(s, Relation) else (s.entity,):
                out[e] = None
        return tuple(out)


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    size: float  # bounding-box side, image-relative
    x: float  # bounding-box centre, image-relative, x right
    y: float  # y down


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]


def make_prompt(
    category: str, a: Entity, b: Entity | None = None, n: int = 1, relation: str | None = None
) -> Prompt:
    """The prompt of a category: `b` for the two-object ones, `n` for counting, `relation`
    (a key of RELATIONS) for spatial."""
    name = f"{a.colour} {a.shape}"
    if category == "single":
        return Prompt(f"a {name}", category, (Exists(a),))
    if category == "counting":
        text = f"{NUMBERS[n]} {name}{'s' if n > 1 else ''}"
        return Prompt(text, category, (Exists(a), Count(a, n)))
    other = f"a {b.colour} {b.shape}"
    if category == "colour_attribution":
        return Prompt(f"a {name} and {other}", category, (Exists(a), Exists(b)))
    if category == "spatial":
        text = f"a {name} {RELATIONS[relation]} {other}"
        return Prompt(text, category, (Exists(a), Exists(b), Relation(a, relation, b)))
    raise ValueError(f"unknown prompt category {category!r}")


def prompt_pool(cfg: SceneConfig, category: str) -> list[Prompt]:
    """Every prompt of a category the config allows, in a fixed order."""
    ents = [Entity(c, s) for c in cfg.colours for s in cfg.shapes]
    if category == "single":
        return [make_prompt(category, e) for e in ents]
    if category == "counting":
        return [make_prompt(category, e, n=n) for n in range(1, cfg.max_count + 1) for e in ents]
    # two objects always differ in colour: that is what attribution tests, and it keeps
    # "which object is the subject" decidable from colour alone
    pairs = [(a, b) for a, b in itertools.permutations(ents, 2) if a.colour != b.colour]
    if category == "colour_attribution":
        return [make_prompt(category, a, b) for a, b in pairs]
    if category == "spatial":
        return [make_prompt(category, a, b, relation=r) for a, b in pairs for r in RELATIONS]
    raise ValueError(f"unknown prompt category {category!r}")


@dataclass(frozen=True)
class PromptSplit:
    train: tuple[Prompt, ...]
    heldout: tuple[Prompt, ...]
    heldout_entities: frozenset[Entity]  # (colour, shape) combos seen only in held-out prompts
    heldout_pairs: frozenset[frozenset[str]]  # colour pairs seen only in held-out prompts

    def is_heldout(self, prompt: Prompt) -> bool:
        return _novel(prompt, self.heldout_entities, self.heldout_pairs) != set()


def split_prompts(cfg: SceneConfig) -> PromptSplit:
    """Hold out combos and colour pairs, then draw up to n_*_per_category prompts per split.

    Held-out draws first take one prompt per held-out combo or pair the category can contain
    (so each appears in the held-out set whenever the cap allows), then fill at random.
    """
    rng = np.random.default_rng(cfg.split_seed)
    ents = [Entity(c, s) for c in cfg.colours for s in cfg.shapes]
    held_ents = _hold_out(ents, cfg.heldout_fraction, rng, lambda e: (e.colour, e.shape))
    pairs = [frozenset(p) for p in itertools.combinations(cfg.colours, 2)]
    # with two colours there is one pair: holding it out would leave no training pair
    held_pairs = _hold_out(pairs, cfg.heldout_fraction, rng, tuple) if len(pairs) > 1 else set()
    train, heldout = [], []
    for category in cfg.categories:
        pool = prompt_pool(cfg, category)
        novel = [_novel(p, held_ents, held_pairs) for p in pool]
        order = rng.permutation(len(pool))
        train += [pool[i] for i in order if not novel[i]][: cfg.n_train_per_category]
        ho = [i for i in order if novel[i]]
        first = set({key: i for i in reversed(ho) for key in novel[i]}.values())
        picked = list(dict.fromkeys([i for i in ho if i in first] + ho))
        heldout += [pool[i] for i in picked[: cfg.n_heldout_per_category]]
    return PromptSplit(tuple(train), tuple(heldout), frozenset(held_ents), frozenset(held_pairs))


def _novel(prompt: Prompt, held_ents, held_pairs) -> set:
    """The held-out combos and colour pairs a prompt contains."""
    ents = prompt.entities
    out: set = {e for e in ents if e in held_ents}
    if len(ents) == 2 and (pair := frozenset(e.colour for e in ents)) in held_pairs:
        out.add(pair)
    return out


def _hold_out(items: list, fraction: float, rng, parts) -> set:
    """Hold out round(fraction * len) items such that every part (a colour, a shape) still
    occurs in some training item; otherwise a held-out prompt would test an unseen word,
    not an unseen combination."""
    k = int(fraction * len(items) + 0.5)  # round half up, not to even
    if k == 0:
        return set()
    every = {p for item in items for p in parts(item)}
    for _ in range(1000):
        held = {items[i] for i in rng.choice(len(items), k, replace=False)}
        if {p for item in items if item not in held for p in parts(item)} == every:
            return held
    raise ConfigError(f"scenes.heldout_fraction: {fraction} leaves some word untrained")


def sample_scene(prompt: Prompt, rng: np.random.Generator, max_tries: int = 5000) -> Scene:
    """A random scene satisfying the prompt: objects inside the image, at least GAP apart, and
    each relation holding with a clear margin (boxes disjoint along its axis, off-axis offset
    at most SLOPE times the on-axis one)."""
    counts = {e: 1 for e in prompt.entities}
    counts.update({s.entity: s.n for s in prompt.statements if isinstance(s, Count)})
    kinds = [e for e, n in counts.items() for _ in range(n)]
    first = {e: kinds.index(e) for e in counts}
    relations = [s for s in prompt.statements if isinstance(s, Relation)]
    for _ in range(max_tries):
        sizes = rng.choice(list(SIZES.values()), len(kinds))
        boxes: list[tuple[float, float, float]] = []
        for s in sizes:
            x, y = rng.uniform(BORDER + s / 2, 1 - BORDER - s / 2, 2)
            if any(not _apart((x, y, s), b) for b in boxes):
                break
            boxes.append((x, y, s))
        else:
            if all(_clear(boxes[first[r.subject]], r, boxes[first[r.other]]) for r in relations):
                zipped = zip(kinds, boxes, strict=True)
                return Scene(
                    tuple(SceneObject(e.colour, e.shape, s, x, y) for e, (x, y, s) in zipped)
                )
    raise RuntimeError(f"no scene for {prompt.text!r} in {max_tries} tries")


def _apart(a, b) -> bool:
    reach = (a[2] + b[2]) / 2 + GAP
    return abs(a[0] - b[0]) >= reach or abs(a[1] - b[1]) >= reach


def _clear(a, r: Relation, b) -> bool:
    along, across = along_across(r.relation, b[0] - a[0], b[1] - a[1])
    return along >= (a[2] + b[2]) / 2 + GAP and abs(across) <= SLOPE * along


def along_across(relation: str, dx: float, dy: float) -> tuple[float, float]:
    """An offset (dx, dy) from subject to other split into the part along the relation's
    direction (positive when the relation holds) and the part across it."""
    ux, uy = AXES[relation]
    return ux * dx + uy * dy, uy * dx - ux * dy


def grammar_words() -> list[str]:
    """Every word any config's grammar can produce (all colours, shapes, plurals), sorted."""
    words = {"a", "and"} | set(COLOURS) | set(NUMBERS.values())
    words |= set(SHAPES) | {s + "s" for s in SHAPES}
    words |= {w for text in RELATIONS.values() for w in text.split()}
    return sorted(words)
