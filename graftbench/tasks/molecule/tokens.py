"""Molecule tokens: SMILES split by the regex tokenizer of the Molecular Transformer, or
SELFIES symbols, and a fixed vocabulary.

A SMILES string is split into atoms, bonds, branches and ring closures by the regular
expression of Schwaller et al. 2019 ("Molecular Transformer: a model for uncertainty-
calibrated chemical reaction prediction", ACS Cent. Sci., Methods), written out here from
its description: bracket atoms ([C@@H], [nH], [O-], [13CH3]) are one token, as are the
two-letter organic-subset atoms Br and Cl and the two-digit ring closures %10..%99.

SELFIES (Krenn et al. 2020, "Self-referencing embedded strings (SELFIES): A 100% robust
molecular string representation", Mach. Learn.: Sci. Technol. 1 045024; the `selfies`
package) spells a molecule as symbols such as [C], [=O], [Ring1], [Branch1] whose every
sequence decodes to a valid molecule: a model over SELFIES cannot produce an unclosed ring
or a broken branch, the errors that dominate a small non-autoregressive model's SMILES
(BENCHMARKS.md). A SELFIES state is invalid only if it spells no atom before its first PAD.

The vocabulary holds two special ids before the sorted data tokens: PAD = 0 fills a state
after the molecule's last token, and is an ordinary token to the diffusion (the model
learns where a molecule ends); MASK = 1 is the absorbing state of `masked.py`, the only
id the diffusion treats specially.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

import torch

PAD, MASK = 0, 1
SPECIAL = ("<pad>", "<mask>")  # their strings hold '<', never valid SMILES, so a decoded
# state with a MASK left before its end is a string RDKit rejects

# one alternative per token kind; two-letter atoms (Br, Cl) before their first letters
_TOKEN = re.compile(
    r"\[[^\]]+\]"  # bracket atom: isotope, chirality, hydrogens, charge, atom-map
    r"|Br?|Cl?|N|O|S|P|F|I"  # aliphatic organic subset (B, Br, C, Cl, ...)
    r"|b|c|n|o|s|p"  # aromatic organic subset
    r"|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$"  # branches, bonds, dots, wildcards
    r"|%[0-9]{2}|[0-9]"  # ring closures: %nn, then single digits
)


Representation = Literal["smiles", "selfies"]


def split(smiles: str, representation: Representation) -> list[str]:
    """A SMILES string as tokens of `representation`: SMILES tokens (`tokenize`), or the
    symbols of its SELFIES encoding. ValueError naming the string if it cannot be split."""
    if representation == "smiles":
        return tokenize(smiles)
    import selfies

    try:
        return list(selfies.split_selfies(selfies.encoder(smiles, strict=True)))
    except selfies.EncoderError as err:
        raise ValueError(f"SMILES {smiles!r}: no SELFIES encoding ({err})") from None


def join(tokens: Sequence[str], representation: Representation) -> str:
    """Tokens of `representation` -> a SMILES string ("" if SELFIES decodes to nothing).
    Never raises."""
    text = "".join(tokens)
    if representation == "smiles":
        return text
    import selfies

    try:
        return selfies.decoder(text) or ""
    except Exception:  # selfies raises DecoderError on malformed symbols; never crash a run
        return ""


def tokenize(smiles: str) -> list[str]:
    """Split one SMILES string into tokens; ValueError naming the string and the first
    character no token covers (e.g. a lone ']' or an element outside brackets like 'Si')."""
    tokens, pos = [], 0
    for m in _TOKEN.finditer(smiles):
        if m.start() != pos:
            break
        tokens.append(m.group())
        pos = m.end()
    if pos != len(smiles):
        raise ValueError(
            f"SMILES {smiles!r}: cannot tokenize character {smiles[pos]!r} at position {pos}"
        )
    return tokens


class Vocabulary:
    """Token <-> id map: PAD = 0, MASK = 1, then `tokens` (the data tokens of
    `representation`, "smiles" or "selfies") from id 2. `encode` takes and `decode` returns
    SMILES whatever the representation."""

    def __init__(self, tokens: Sequence[str], representation: Representation = "smiles"):
        if representation not in ("smiles", "selfies"):
            raise ValueError(f"representation: {representation!r}; choose 'smiles' or 'selfies'")
        self.representation = representation
        tokens = list(tokens)
        if len(set(tokens)) != len(tokens) or set(tokens) & set(SPECIAL):
            raise ValueError(
                "Vocabulary: tokens must be distinct and exclude " + ", ".join(SPECIAL)
            )
        self.tokens = [*SPECIAL, *tokens]
        self.index = {tok: i for i, tok in enumerate(self.tokens)}

    @classmethod
    def from_smiles(
        cls, smiles: Iterable[str], representation: Representation = "smiles"
    ) -> Vocabulary:
        """Every token of `smiles` in `representation`, sorted, so the same data always gives
        the same ids."""
        return cls(
            sorted({tok for s in smiles for tok in split(s, representation)}), representation
        )

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, smiles_list: Sequence[str], length: int) -> torch.Tensor:
        """SMILES strings -> ids (batch, length) long, PAD after each molecule's tokens.
        ValueError naming the SMILES if it has more than `length` tokens, a token outside
        the vocabulary or a character no token covers."""
        out = torch.full((len(smiles_list), length), PAD, dtype=torch.long)
        for i, s in enumerate(smiles_list):
            toks = split(s, self.representation)
            if len(toks) > length:
                raise ValueError(f"SMILES {s!r}: {len(toks)} tokens, more than length {length}")
            for tok in toks:
                if tok not in self.index:
                    raise ValueError(f"SMILES {s!r}: token {tok!r} is not in the vocabulary")
            out[i, : len(toks)] = torch.tensor([self.index[t] for t in toks], dtype=torch.long)
        return out

    def decode(self, tokens) -> list[str]:
        """ids (batch, length) (a tensor, an array or nested lists; a 1-d row is one
        molecule) -> one SMILES per row. The molecule ends at the first PAD, as a language
        model's text ends at its end-of-sequence token: what follows is not read. A row
        whose tokens before that PAD hold a MASK or an id outside the vocabulary gives those
        ids as they are ('<mask>', '<unk:id>'): never valid SMILES, so the reward scores it
        invalid. Never raises, since it runs on whatever a sampler produced."""
        rows = tokens.tolist() if hasattr(tokens, "tolist") else tokens  # tensor, ndarray
        if not isinstance(rows, list | tuple):
            rows = [[rows]]
        elif rows and not isinstance(rows[0], list | tuple):
            rows = [rows]
        return [self._decode_row(row) for row in rows]

    def _decode_row(self, row) -> str:
        ids = []
        for i in row:
            try:
                ids.append(int(i))
            except (TypeError, ValueError, OverflowError):
                ids.append(-1)  # not an id at all: rendered '<unk:-1>'
        ids = ids[: ids.index(PAD)] if PAD in ids else ids
        if all(2 <= i < len(self) for i in ids):
            return join([self.tokens[i] for i in ids], self.representation)
        return "".join(self.tokens[i] if 0 <= i < len(self) else f"<unk:{i}>" for i in ids)

    def to_dict(self) -> dict:
        """Plain-JSON form for checkpoints: the data tokens in id order, and the specials."""
        return {
            "tokens": self.tokens[len(SPECIAL) :],
            "special": list(SPECIAL),
            "representation": self.representation,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        if list(data.get("special", SPECIAL)) != list(SPECIAL):
            raise ValueError(
                f"Vocabulary.from_dict: special tokens {data['special']}, this "
                f"version uses {list(SPECIAL)}"
            )
        return cls(data["tokens"], data.get("representation", "smiles"))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocabulary)
            and self.tokens == other.tokens
            and self.representation == other.representation
        )

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids: {' '.join(self.tokens)})"
