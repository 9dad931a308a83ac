"""Loaders of the paper-scale prompt sets, on small files in each set's format."""

import json

import pytest

from graftbench.config import InputError
from graftbench.tasks.t2i.prompt_sets import load_prompt_set


def test_genai_bench_reads_ids_and_prompts(tmp_path):
    data = {
        "00000": {"id": "00000", "prompt": "A cat left of a dog.", "models": {}},
        "00001": {"id": "00001", "prompt": " three red apples "},
    }
    (tmp_path / "genai_image.json").write_text(json.dumps(data))
    prompts = load_prompt_set("genai-bench", tmp_path)  # the folder finds genai_image.json
    assert [(p.id, p.text, p.category) for p in prompts] == [
        ("00000", "A cat left of a dog.", "genai"),
        ("00001", "three red apples", "genai"),
    ]


def test_geneval_keeps_tag_and_object_specs(tmp_path):
    lines = [
        {
            "tag": "counting",
            "include": [{"class": "apple", "count": 3}],
            "prompt": "a photo of three apples",
        },
        {
            "tag": "colors",
            "include": [{"class": "car", "color": "red"}],
            "prompt": "a photo of a red car",
        },
    ]
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    prompts = load_prompt_set("geneval", path)
    assert [p.category for p in prompts] == ["counting", "colors"]
    assert prompts[0].meta == {"include": [{"class": "apple", "count": 3}]}
    assert prompts[1].id == "evaluation_metadata.jsonl:2"


def test_t2i_compbench_takes_the_category_from_the_file_name(tmp_path):
    (tmp_path / "color_val.txt").write_text("a blue bench and a green car\n\na red book\n")
    (tmp_path / "spatial_val.txt").write_text("a cat on the left of a dog\n")
    (tmp_path / "color_train.txt").write_text("not a validation prompt\n")
    prompts = load_prompt_set("t2i-compbench", tmp_path)
    assert [(p.category, p.text) for p in prompts] == [
        ("color", "a blue bench and a green car"),
        ("color", "a red book"),
        ("spatial", "a cat on the left of a dog"),
    ]
    assert prompts[1].id == "color_val.txt:3"


@pytest.mark.parametrize(
    ("name", "files", "message"),
    [
        ("genai-bench", {}, "genai_image.json: not found"),
        ("genai-bench", {"genai_image.json": "[1, 2]"}, "expected a mapping"),
        ("genai-bench", {"genai_image.json": '{"7": {"text": "x"}}'}, "entry '7' has no 'prompt'"),
        (
            "genai-bench",
            {"genai_image.json": '{"7": {"prompt": ""}}'},
            "must be a non-empty string",
        ),
        (
            "geneval",
            {"evaluation_metadata.jsonl": '{"tag": "colors", "prompt": "a"}\n{oops\n'},
            "evaluation_metadata.jsonl line 2: not JSON",
        ),
        (
            "geneval",
            {"evaluation_metadata.jsonl": '{"prompt": "a"}\n'},
            "line 1: expected an object with 'tag'",
        ),
        ("t2i-compbench", {"readme.md": "x"}, "no <category>_val.txt files"),
        ("t2i-compbench", {"color_val.txt": "\n\n"}, "no prompts found"),
        ("parti", {}, "'parti' is not known; choose one of genai-bench, geneval, t2i-compbench"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path, name, files, message):
    for fname, text in files.items():
        (tmp_path / fname).write_text(text)
    with pytest.raises(InputError, match=message):
        load_prompt_set(name, tmp_path)
