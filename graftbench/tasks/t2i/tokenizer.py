"""A tiny CLIP tokenizer for the scene grammar, written as vocab.json + merges.txt.

Nothing may be downloaded here, so the small T2I model cannot use openai/clip-vit's 49,408-
token vocabulary. We write files in the same format (`transformers.CLIPTokenizer` loads
them offline with `from_pretrained(folder)`) and the same layout as CLIP's:
    256 byte-level symbols, the same 256 with the "</w>" word-end suffix, one token per BPE
    merge, then <|startoftext|> and <|endoftext|> (which CLIP also uses as unk and pad).
The merges are learned by plain BPE on the grammar's words until each word is a single
token; a word outside the grammar still encodes, as byte-level pieces, instead of failing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from graftbench.tasks.t2i.scenes import grammar_words

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
SUFFIX = "</w>"  # CLIP marks the last symbol of a word with it


def learn_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """BPE merges after which every word is one symbol "word</w>".

    Each word counts once; the most frequent adjacent pair is merged first, ties broken by
    the pair's text so the files are reproducible. Encoding a word applies the merges in this
    order, which replays the merges that built it, so it ends as a single token.
    """
    words = [tuple(w[:-1]) + (w[-1] + SUFFIX,) for w in sorted(set(words))]
    merges = []
    while True:
        pairs = Counter(p for w in words for p in zip(w, w[1:], strict=False))
        if not pairs:
            return merges
        pair = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(pair)
        words = [_merge(w, pair) for w in words]


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if word[i : i + 2] == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def write_clip_tokenizer(
    folder: str | Path, words: Iterable[str] | None = None, model_max_length: int = 16
) -> Path:
    """Write vocab.json, merges.txt and tokenizer_config.json for a CLIPTokenizer.

    words: the words that must be single tokens (default: `scenes.grammar_words()`),
    lowercase ASCII letters, as CLIP's pre-tokenizer splits on anything else.
    model_max_length: the padded sequence length, including <|startoftext|> and
    <|endoftext|> (the longest grammar prompt is 10 words, so 12 tokens).
    Returns the folder; the vocabulary size is len(vocab.json), needed by the text encoder.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    words = sorted(set(grammar_words() if words is None else words))
    bad = [w for w in words if not (w.isascii() and w.isalpha() and w.islower())]
    if bad:
        raise ValueError(f"words: {bad[:5]} are not lowercase ASCII words")
    # ASCII letters are their own byte-level symbols, so words need no byte mapping
    alphabet = sorted(ByteLevel.alphabet())
    merges = learn_merges(words)
    tokens = alphabet + [c + SUFFIX for c in alphabet] + ["".join(p) for p in merges]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens + [BOS, EOS]))}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
