"""Molecule data: canonical forms, the SMILES readers and writer, the split, QM9 and MOSES."""

from __future__ import annotations

import gzip
import importlib.util
import math
import random
import zipfile

import pytest

from graftbench.tasks.molecule.data import (
    canonical,
    load_moses,
    load_qm9,
    parse,
    read_scored_smiles,
    read_smiles,
    split,
    write_smiles,
)


def test_canonical_merges_spellings_and_drops_stereo():
    assert canonical("OCC") == canonical("CCO") == "CCO"
    assert canonical("C1=CC=CC=C1") == canonical("c1ccccc1") == "c1ccccc1"
    # stereo is not modelled: enantiomers and the flat graph are one molecule
    assert canonical("C[C@H](O)F") == canonical("C[C@@H](O)F") == canonical("CC(O)F")


@pytest.mark.parametrize(
    "garbage", ["", "xyz", "C1CC", "C(", "c1cccc1", "<mask>", "[Xx]", "\x00", " ", None, 42, b"CCO"]
)
def test_canonical_is_none_for_garbage_and_never_raises(garbage):
    assert canonical(garbage) is None
    assert parse(garbage) is None


def test_read_smiles_skips_comments_blanks_and_extra_columns(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("# my molecules\nOCC ethanol 0.5\n\n  c1ccccc1\tbenzene\nCCO\n")
    assert read_smiles(path) == ["CCO", "c1ccccc1", "CCO"]  # canonical, duplicates kept
    path.write_text("SMILES\tname\nOCC\tethanol\n")  # a header line is skipped
    assert read_smiles(path) == ["CCO"]
    write_smiles(path, ["OCC", "c1ccccc1"], {"qed": [0.4, 0.44]})  # so is write_smiles's
    assert read_smiles(path) == ["CCO", "c1ccccc1"]


def test_read_smiles_names_file_line_and_text_of_a_bad_smiles(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("CCO\n# comment\nC1CC  broken ring\nCCN\n")
    with pytest.raises(ValueError) as err:
        read_smiles(path)
    assert str(err.value) == f"{path} line 3: 'C1CC' is not a valid SMILES (rdkit cannot parse it)"


def test_read_smiles_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.smi"):
        read_smiles(tmp_path / "nothere.smi")
    for text in ("", "# only a comment\n\n"):
        (tmp_path / "empty.smi").write_text(text)
        with pytest.raises(ValueError, match="empty.smi: no molecules"):
            read_smiles(tmp_path / "empty.smi")


def test_write_read_scored_smiles_round_trip(tmp_path):
    # samples as generated: invalid and empty strings are kept, in order
    smiles = ["CCO", "", "C1CC", "<pad>", "c1ccccc1"]
    scores = {"qed": [0.1, 0.0, 0.0, 0.0, 1 / 3], "sa": [1.5, math.nan, 2.0, 3.0, 1.0]}
    path = tmp_path / "out" / "samples.tsv"
    write_smiles(path, smiles, scores)
    assert path.read_text().splitlines()[0] == "smiles\tqed\tsa"
    got, got_scores = read_scored_smiles(path)
    assert got == smiles and list(got_scores) == ["qed", "sa"]
    assert got_scores["qed"] == scores["qed"]  # repr round-trips floats exactly
    assert math.isnan(got_scores["sa"][1]) and got_scores["sa"][2:] == scores["sa"][2:]
    write_smiles(path, ["CCO", ""])  # no scores: an empty sample is an empty line
    assert read_scored_smiles(path) == (["CCO", ""], {})
    assert not list(path.parent.glob(".*.tmp"))


def test_write_smiles_rejects_what_the_table_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="tab or newline"):
        write_smiles(tmp_path / "a.tsv", ["C\tC"])
    with pytest.raises(ValueError, match="score 'qed' needs"):
        write_smiles(tmp_path / "a.tsv", ["C", "CC"], {"qed": [1.0]})


def test_split_is_deterministic_disjoint_and_complete():
    mols = [f"C{'C' * i}O" for i in range(100)]
    train, test = split(mols, 0.2, seed=3)
    assert (train, test) == split(mols, 0.2, seed=3)
    assert len(test) == 20 and len(train) == 80
    assert sorted(train + test) == sorted(mols) and not set(train) & set(test)
    assert train == [m for m in mols if m in set(train)]  # input order kept
    assert split(mols, 0.2, seed=4)[1] != test
    for bad in (0.0, 1.0, 0.001):
        with pytest.raises(ValueError, match="split"):
            split(mols, bad, seed=0)


def _fake_moses(folder):
    blob = gzip.compress(b"SMILES\nCCO\nc1ccccc1\n")
    (folder / "test.csv.gz").write_bytes(blob)
    wheel = folder / "molsets-0.3.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("moses/dataset/data/test.csv.gz", blob)
    return wheel


def test_load_moses_reads_a_wheel_or_a_folder(tmp_path):
    wheel = _fake_moses(tmp_path)
    assert load_moses("test", wheel) == load_moses("test", tmp_path) == ["CCO", "c1ccccc1"]
    with pytest.raises(ValueError, match="train, test, test_scaffolds"):
        load_moses("valid", wheel)


@pytest.mark.skipif(importlib.util.find_spec("moses") is not None, reason="moses installed")
def test_load_moses_without_a_source_says_how_to_get_one():
    with pytest.raises(ModuleNotFoundError, match="molsets==0.3.1"):
        load_moses("test")


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_load_qm9_is_unique_canonical_and_complete():
    mols = load_qm9()
    # 130,831 rows; 130,744 distinct graphs with qm9pack 1.0.3 and RDKit 2026.9.1
    assert 130_000 < len(mols) <= 130_831
    assert len(set(mols)) == len(mols)
    assert mols[:3] == ["C", "N", "O"]  # QM9 index order: methane, ammonia, water
    # re-canonicalising all of them would double the load time; a random sample does
    sample = random.Random(0).sample(mols, 3000)
    assert all(canonical(s) == s for s in sample)
    assert load_qm9() is not load_qm9()  # cached, but callers get their own list
