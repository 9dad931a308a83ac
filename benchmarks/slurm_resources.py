"""Per-rule SLURM requests (runtime, mem_mb) from the `benchmark:` files of a real run, for a
profile's `set-resources` block: the largest job of each rule, with headroom.

    python benchmarks/slurm_resources.py results/smoke                 # print the block
    python benchmarks/slurm_resources.py results/smoke --update tests/cluster/profile/config.yaml

Every rule with a `benchmark:` directive names its file after its wildcards
(`{task}/benchmarks/{run}_seed{seed}.tsv`); the rule of each file is found by matching it
against those patterns, read from rules/*.smk (the most literal pattern wins, so
`unconditional/benchmarks/features.tsv` is unconditional_features, not finetune_features).
`--update` replaces the file's `set-resources:` block (to the next top-level key) with the
measured one and leaves the rest of the file as it is.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# sized by benchmarks/slurm_resources.py"
RULE = re.compile(r"^\s*rule (\w+):", re.MULTILINE)
BENCHMARK = re.compile(r"^\s*benchmark:\s*\n\s*f\"([^\"]+)\"", re.MULTILINE)
FOLDER = re.compile(r"^\s*(\w+) = f\"\{RESULTS\}/(\w+)\"", re.MULTILINE)
CONSTRAINTS = r"wildcard_constraints:\s*\n((?:[ \t]+\w+=.*\n)+)"
WORKFLOW_CONSTRAINTS = re.compile("^" + CONSTRAINTS, re.MULTILINE)  # at the top level
RULE_CONSTRAINTS = re.compile(r"^[ \t]+" + CONSTRAINTS, re.MULTILINE)  # inside a rule


def _constraints(text: str, pattern: re.Pattern) -> dict[str, str]:
    """The wildcard constraints given as string literals (not function calls) in text's
    first block that pattern finds."""
    block = pattern.search(text)
    pairs = re.findall(r"(\w+)=r?\"([^\"]+)\"", block.group(1)) if block else []
    return dict(pairs)


def benchmark_patterns(rules_dir: Path = ROOT / "rules") -> list[tuple[str, re.Pattern]]:
    """(rule, regex of the benchmark path relative to results/<profile>/), most literal first."""
    texts = {p: p.read_text() for p in sorted(rules_dir.glob("*.smk"))}
    folders = {name: sub for t in texts.values() for name, sub in FOLDER.findall(t)}
    constraints = {"task": r"[^/]+"} | {
        k: v
        for t in texts.values()
        for k, v in _constraints(t, WORKFLOW_CONSTRAINTS).items()
        if k != "task"  # the workflow's is a join of the configured tasks
    }
    out = []
    for text in texts.values():
        starts = [m.start() for m in RULE.finditer(text)] + [len(text)]
        for begin, end in zip(starts, starts[1:], strict=False):
            block = text[begin:end]
            m = BENCHMARK.search(block)
            if m is None:
                continue
            rule = RULE.match(block).group(1)
            # a rule's own constraints (string literals) before the workflow's
            local = constraints | _constraints(block, RULE_CONSTRAINTS)
            template = m.group(1).replace("{RESULTS}/", "")
            for name, sub in folders.items():
                template = template.replace(f"{{{name}}}", sub)
            parts = re.split(r"\{\{(\w+)\}\}", template)
            regex = "".join(
                re.escape(p) if i % 2 == 0 else f"(?:{local.get(p, '[^/]+')})"
                for i, p in enumerate(parts)
            )
            literal = sum(len(p) for p in parts[::2])
            out.append((literal, rule, re.compile(regex)))
    return [(rule, regex) for _, rule, regex in sorted(out, key=lambda r: -r[0])]


def measure(results: str | Path, patterns) -> tuple[pd.DataFrame, list[str]]:
    """One row per benchmark file under results (rule, file, s, max_rss in MB), and the files
    that no rule's pattern matches."""
    results = Path(results)
    rows, unknown = [], []
    for path in sorted(results.glob("*/benchmarks/*.tsv")):
        relative = path.relative_to(results).as_posix()
        rule = next((r for r, regex in patterns if regex.fullmatch(relative)), None)
        if rule is None:
            unknown.append(relative)
            continue
        last = pd.read_csv(path, sep="\t").iloc[-1]  # `repeat` writes one row per repeat
        rows.append(
            {"rule": rule, "file": relative, "s": float(last["s"]), "max_rss": last["max_rss"]}
        )
    measured = pd.DataFrame(rows, columns=["rule", "file", "s", "max_rss"])
    measured["max_rss"] = pd.to_numeric(measured["max_rss"], errors="coerce").fillna(0.0)
    return measured, unknown


def requests(measured: pd.DataFrame) -> pd.DataFrame:
    """Per rule: runtime (min) = max(2, ceil((2 x max s + 60 s) / 60 s)) and mem_mb =
    max(1000, 1.5 x max max_rss + 1000 MB), rounded up to 100 MB: twice the time and half as
    much memory again as the largest job took, plus a fixed allowance for a slower node and
    for SLURM's own step."""
    per_rule = measured.groupby("rule").agg(
        jobs=("s", "size"), max_s=("s", "max"), max_rss=("max_rss", "max")
    )
    per_rule["runtime"] = [max(2, math.ceil((2 * s + 60) / 60)) for s in per_rule["max_s"]]
    per_rule["mem_mb"] = [
        max(1000, math.ceil((1.5 * rss + 1000) / 100) * 100) for rss in per_rule["max_rss"]
    ]
    return per_rule


def block(per_rule: pd.DataFrame, source: str) -> str:
    lines = [
        f"{MARKER} from {source} (the largest job of",
        "# each rule): runtime = max(2, ceil((2 x max s + 60 s) / 60 s)) min;"
        " mem_mb = max(1000, 1.5 x max max_rss + 1000 MB, rounded up to 100 MB)",
        "set-resources:",
    ]
    for r in per_rule.itertuples():
        lines.append(
            f"  {r.Index}: {{mem_mb: {r.mem_mb}, runtime: {r.runtime}}}"
            f"  # {r.jobs} job(s), max {r.max_s:.0f} s, {r.max_rss:.0f} MB"
        )
    return "\n".join(lines) + "\n"


def update(profile: Path, new_block: str) -> None:
    """Replace the profile's set-resources block (and the marker comment above it, if any)."""
    lines = profile.read_text().splitlines(keepends=True)
    block = next(i for i, line in enumerate(lines) if line.startswith("set-resources:"))
    start = next((i for i in range(block) if lines[i].startswith(MARKER)), block)
    end = block + 1
    while end < len(lines) and (lines[end].startswith((" ", "#")) or not lines[end].strip()):
        end += 1
    profile.write_text("".join(lines[:start]) + new_block + "".join(lines[end:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a profile's results folder, e.g. results/smoke")
    parser.add_argument("--update", type=Path, help="a profile config.yaml to rewrite")
    args = parser.parse_args(argv)
    measured, unknown = measure(args.results, benchmark_patterns())
    if unknown:
        print(f"no rule's benchmark pattern matches: {', '.join(unknown)}", file=sys.stderr)
        return 1
    if measured.empty:
        print(f"{args.results}: no */benchmarks/*.tsv (run the workflow first)", file=sys.stderr)
        return 1
    text = block(requests(measured), args.results)
    if args.update:
        update(args.update, text)
        print(f"updated {args.update}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
