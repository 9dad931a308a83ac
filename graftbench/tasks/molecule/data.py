"""Molecules as SMILES strings: QM9 and MOSES loaders, canonical forms, and two file formats.

Every SMILES this module returns is canonical in one form, `canonical`: RDKit's canonical
SMILES *without* stereochemistry (isomericSmiles=False). QM9's SMILES carry none (none of
qm9pack's 130,831 has '@', '/' or '\\'), the task's models do not model it, and a sample that
differs from a training molecule only by a stereo mark is the same graph, so uniqueness and
novelty compare graphs. MOSES's `canonic_smiles` keeps stereo; on stereo-free sets the two
agree.

Data:
- `load_qm9`: QM9 (Ramakrishnan et al., "Quantum chemistry structures and properties of 134
  kilo molecules", Sci. Data 2014), read from the csv files of the `qm9pack` wheel (130,831
  rows: the paper's 133,885 less the 3,054 that failed its geometry consistency check).
- `load_moses`: the MOSES splits (Polykovskiy et al., "Molecular Sets (MOSES)", Front.
  Pharmacol. 2020), read from the csv.gz files of the `molsets` 0.3.1 wheel.

Files: `read_smiles` reads a user's SMILES file (one molecule a line, extra columns ignored);
`write_smiles`/`read_scored_smiles` keep samples, invalid ones included, with their scores
in a TSV: a header `smiles<TAB>name...`, then one sample a line.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
import io
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase

from graftbench.config import InputError

QM9_ROWS = 130_831  # rows of qm9pack 1.0.3's three csv parts (indices 1..133,885 with gaps)
MOSES_SPLITS = ("train", "test", "test_scaffolds")


def parse(smiles: object) -> Chem.Mol | None:
    """The RDKit molecule of `smiles`, or None when it is not a str, is empty, has no atoms
    or does not parse and sanitise. Never raises; RDKit's error log is silenced."""
    if not isinstance(smiles, str) or not smiles:
        return None
    try:
        with rdBase.BlockLogs():  # parse errors are expected (samples), not worth a log line
            mol = Chem.MolFromSmiles(smiles)  # sanitises: valences, aromaticity
    except Exception:  # RDKit raises on a few inputs (e.g. embedded NULs in some versions)
        return None
    return mol if mol is not None and mol.GetNumAtoms() > 0 else None


def canonical(smiles: object) -> str | None:
    """The canonical SMILES of `smiles` (no stereo, see the module docstring), or None when
    it is not a valid molecule (`parse`). Never raises."""
    mol = parse(smiles)
    if mol is None:
        return None
    try:
        return Chem.MolToSmiles(mol, isomericSmiles=False)
    except Exception:
        return None


def _canonical_unique(smiles: Iterable[str]) -> list[str]:
    """Canonical forms of the valid `smiles`, first occurrence kept, order preserved."""
    return list(dict.fromkeys(c for c in map(canonical, smiles) if c is not None))


def _package_dir(package: str, install: str) -> Path:
    # find_spec locates a top-level package without running its __init__ (qm9pack's imports
    # pkg_resources, gone from recent setuptools; molsets' needs pomegranate, which no
    # longer builds), so only the data files have to be there.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed; {install}")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def _qm9() -> tuple[str, ...]:
    data = _package_dir("qm9pack", "pip install qm9pack==1.0.3") / "data"
    raw = []
    for part in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):  # in QM9 index order
        with open(data / part, newline="") as f:
            rows = csv.reader(f)
            column = next(rows).index("SMILES")  # the GDB-17 SMILES of each molecule
            raw.extend(row[column] for row in rows)
    return tuple(_canonical_unique(raw))


def load_qm9() -> list[str]:
    """QM9's molecules as unique canonical SMILES, in QM9 index order.

    130,744 strings with qm9pack 1.0.3 and RDKit 2026.9.1: all 130,831 rows parse, and 87
    repeat an earlier molecule's graph. ~13 s on one core the first time, then cached.
    """
    return list(_qm9())


def load_moses(split: str = "train", source: str | Path | None = None) -> list[str]:
    """One MOSES split's SMILES as stored (the MOSES authors' RDKit canonical forms).

    `source` is the `molsets-0.3.1-py3-none-any.whl` file (`pip download molsets==0.3.1
    --no-deps`), a folder holding `<split>.csv.gz`, or None for an installed `moses` package
    (`pip install --no-deps molsets==0.3.1`; its full install fails building pomegranate
    0.12.0, and `import moses` fails, so the file is read directly). Sizes: train 1,584,663,
    test 176,074, test_scaffolds 176,225. Map through `canonical` before comparing with this
    module's canonical forms (they agree on 99.9% of a 5,000-molecule sample of test).
    """
    if split not in MOSES_SPLITS:
        raise ValueError(f"MOSES split {split!r} is not one of {', '.join(MOSES_SPLITS)}")
    member = f"moses/dataset/data/{split}.csv.gz"
    if source is not None and Path(source).suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            blob = wheel.read(member)
    else:
        folder = Path(source) if source is not None else None
        if folder is None:
            install = "pip install --no-deps molsets==0.3.1, or pass the wheel as `source`"
            folder = _package_dir("moses", install) / "dataset" / "data"
        blob = (folder / f"{split}.csv.gz").read_bytes()
    rows = csv.reader(io.StringIO(gzip.decompress(blob).decode("utf-8")))
    if next(rows, None) != ["SMILES"]:
        raise InputError(f"{source or 'moses'}: {split}.csv.gz does not start with 'SMILES'")
    return [row[0] for row in rows if row]


def read_smiles(path: str | Path) -> list[str]:
    """Canonical SMILES of a user's file, in file order, duplicates kept.

    One SMILES a line, optionally followed by whitespace and other columns (a name, a
    score), which are ignored; blank lines, lines starting with '#' and a header line whose
    first field is 'smiles' (any case; `write_smiles` and MOSES write one) are skipped. An
    invalid SMILES is an error naming the file, the line (from 1) and the text.
    """
    try:
        with open(path) as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such SMILES file") from None
    out, header = [], True
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if header and fields[0].lower() == "smiles":  # not a molecule: 'm' is no element
            header = False
            continue
        header = False
        smiles = canonical(fields[0])
        if smiles is None:
            raise InputError(
                f"{path} line {n}: {fields[0]!r} is not a valid SMILES (rdkit cannot parse it)"
            )
        out.append(smiles)
    if not out:
        raise InputError(f"{path}: no molecules (only blank, '#' or header lines)")
    return out


def write_smiles(
    path: str | Path, smiles: Sequence[str], scores: Mapping[str, Sequence[float]] | None = None
) -> None:
    """Write samples (as generated: invalid strings too) and their scores as a TSV, atomically.

    Header `smiles<TAB>name...` over one line per sample; floats are written with repr, so
    they read back exactly. A SMILES holding a tab or newline would break the table: error.
    """
    scores = dict(scores or {})
    for name, values in scores.items():
        if len(values) != len(smiles) or not name or any(c in name for c in "\t\n"):
            raise ValueError(
                f"write_smiles: score {name!r} needs a plain name and "
                f"{len(smiles)} values, got {len(values)}"
            )
    lines = ["\t".join(["smiles", *scores])]
    for i, s in enumerate(smiles):
        if "\t" in s or "\n" in s or "\r" in s:
            raise ValueError(f"write_smiles: sample {i} {s!r} holds a tab or newline")
        lines.append("\t".join([s, *(repr(float(v[i])) for v in scores.values())]))
    # a temporary sibling renamed into place: a killed run leaves the old file or the new one
    # (imported here: graftbench.records imports torch, which reading data does not need)
    from graftbench.records import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_scored_smiles(path: str | Path) -> tuple[list[str], dict[str, list[float]]]:
    """Inverse of `write_smiles`: (samples as written, {score name: values})."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    # every line counts, blank ones too: an empty sample with no scores is an empty line
    lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    if not lines or lines[0].split("\t")[0] != "smiles":
        raise InputError(f"{path}: expected a header line starting with 'smiles'")
    names = lines[0].split("\t")[1:]
    smiles, values = [], [[] for _ in names]
    for n, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if len(fields) != len(names) + 1:
            raise InputError(f"{path} line {n}: {len(fields)} fields, expected {len(names) + 1}")
        smiles.append(fields[0])
        for column, field in zip(values, fields[1:], strict=True):
            try:
                column.append(float(field))
            except ValueError:
                raise InputError(f"{path} line {n}: {field!r} is not a number") from None
    return smiles, dict(zip(names, values, strict=True))


def split(smiles: Sequence[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, test): a random `test_fraction` of `smiles` (rounded) is held out.

    Deterministic in `seed`; each part keeps the input order. Pass unique canonical SMILES
    (`load_qm9`'s) so that no molecule lands in both parts and novelty is measured honestly.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"split: test_fraction {test_fraction} must lie in (0, 1)")
    n_test = math.floor(test_fraction * len(smiles) + 0.5)
    if not 0 < n_test < len(smiles):
        raise ValueError(
            f"split: {len(smiles)} molecules at test_fraction {test_fraction} leave one part empty"
        )
    held = np.zeros(len(smiles), dtype=bool)
    held[np.random.default_rng(seed).permutation(len(smiles))[:n_test]] = True
    return (
        [s for s, h in zip(smiles, held, strict=True) if not h],
        [s for s, h in zip(smiles, held, strict=True) if h],
    )
