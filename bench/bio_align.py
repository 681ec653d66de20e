"""Pairwise alignment score speed: bio.align (LuaJIT and Lua 5.4) beside Biopython's PairwiseAligner.

Scores 1 kb x 1 kb pairs (related DNA and protein sequences, random seed fixed) with the same
parameters in every implementation, checks that the scores agree, and prints a table; then
times align() (one optimal alignment with its traceback) beside Biopython's
``aligner.align(a, b)[0]`` for two of the configurations.
Lua runs in process through lupa (the runtimes bioxen uses) and as the stock Debian binaries;
Lua times are measured inside Lua with os.clock around the score() call only, Biopython's
with time.process_time around aligner.score(). Best of several repeats.

    python bench/bio_align.py [--length 1000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import importlib
import json
import random
import shutil
import subprocess
import time
import warnings

from bioxen_shell.paths import bio_stdlib_dir

from Bio.Align import PairwiseAligner, substitution_matrices

CONFIGS = [
    ("DNA global, linear (Biopython defaults)", "dna", {}),
    ("DNA global, affine -5/-2, end gaps 0", "dna", {"match_score": 2, "mismatch_score": -3,
                                                    "open_gap_score": -5, "extend_gap_score": -2,
                                                    "end_gap_score": 0}),
    ("DNA local, affine -5/-2", "dna", {"mode": "local", "match_score": 2, "mismatch_score": -3,
                                        "open_gap_score": -5, "extend_gap_score": -2}),
    ("protein global, BLOSUM62 -11/-1", "protein", {"substitution_matrix": "BLOSUM62",
                                                    "open_gap_score": -11, "extend_gap_score": -1}),
    ("protein local, BLOSUM62 -11/-1", "protein", {"mode": "local", "substitution_matrix": "BLOSUM62",
                                                   "open_gap_score": -11, "extend_gap_score": -1}),
]


def related_pair(rng, alphabet, length):
    a = [rng.choice(alphabet) for _ in range(length)]
    b = []
    for c in a:
        r = rng.random()
        if r < 0.08:
            b.append(rng.choice(alphabet))
        elif r < 0.11:
            continue
        elif r < 0.14:
            b.extend([c, rng.choice(alphabet)])
        else:
            b.append(c)
    return "".join(a), "".join(b)


def lua_literal(v):
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(x)}" for k, x in v.items()) + "}"
    return repr(v)


def lua_program(a, b, opts, repeat, method="score"):
    path = f"{bio_stdlib_dir()}/?.lua;{bio_stdlib_dir()}/?/init.lua"
    return f"""
package.path = [[{path}]] .. ";" .. package.path
local align = require "bio.align"
local aligner = align.new({lua_literal(opts)})
local a, b = {lua_literal(a)}, {lua_literal(b)}
local best, score = math.huge, nil
for _ = 1, {repeat} do
  local t0 = os.clock()
  score = aligner:{method}(a, b)
  local dt = os.clock() - t0
  if type(score) == "table" then score = score.score end
  if dt < best then best = dt end
end
return string.format("%.17g %.17g", score, best)
"""


def run_lupa(module, program):
    lua = importlib.import_module(module).LuaRuntime()
    out = lua.execute(program)
    score, secs = out.split()
    return float(score), float(secs)


def run_binary(exe, program):
    src = program.replace("return string.format", "io.write(string.format", 1).rstrip() + ")\n"
    out = subprocess.run([exe, "-"], input=src.encode(), capture_output=True, check=True).stdout.decode()
    score, secs = out.split()
    return float(score), float(secs)


def run_biopython(a, b, opts, repeat, method="score"):
    kwargs = dict(opts)
    if "substitution_matrix" in kwargs:
        kwargs["substitution_matrix"] = substitution_matrices.load(kwargs["substitution_matrix"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aligner = PairwiseAligner(**kwargs)
    best, score = float("inf"), None
    for _ in range(repeat):
        t0 = time.process_time()
        if method == "score":
            score = aligner.score(a, b)
        else:
            score = aligner.align(a, b)[0].score
        best = min(best, time.process_time() - t0)
    return score, best, aligner.algorithm


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(42)
    pairs = {"dna": related_pair(rng, "ACGT", args.length),
             "protein": related_pair(rng, "ACDEFGHIKLMNPQRSTVWY", args.length)}
    runners = [("luajit (lupa)", lambda p: run_lupa("lupa.luajit21", p)),
               ("lua5.4 (lupa)", lambda p: run_lupa("lupa.lua54", p))]
    for exe in ("luajit", "lua5.4"):
        if shutil.which(exe):
            runners.append((exe, lambda p, exe=exe: run_binary(exe, p)))
    header = f"{'alignment (' + str(args.length) + ' x ~' + str(args.length) + ')':42} {'Biopython':>10}"
    header += "".join(f" {name:>14}" for name, _ in runners)
    print(header)
    print(f"{'':42} {'ms':>10}" + "".join(f" {'ms (x Bio)':>14}" for _ in runners))
    for title, kind, opts in CONFIGS:
        a, b = pairs[kind]
        want, bio_secs, _algorithm = run_biopython(a, b, opts, args.repeat)
        row = f"{title:42} {bio_secs * 1e3:10.2f}"
        program = lua_program(a, b, opts, args.repeat)
        for name, runner in runners:
            score, secs = runner(program)
            if abs(score - want) > 1e-9 * max(1.0, abs(want)):
                raise SystemExit(f"{name}: score {score} differs from Biopython's {want} ({title})")
            row += f" {secs * 1e3:8.1f} ({secs / bio_secs:4.1f}x)"
        print(row)
    print()
    print(f"{'align(): one alignment + traceback':42} {'Biopython':>10}" + "".join(f" {name:>14}" for name, _ in runners))
    for title, kind, opts in (CONFIGS[1], CONFIGS[3]):
        a, b = pairs[kind]
        want, bio_secs, _algorithm = run_biopython(a, b, opts, args.repeat, "align")
        row = f"{title:42} {bio_secs * 1e3:10.2f}"
        program = lua_program(a, b, opts, args.repeat, "align")
        for name, runner in runners:
            score, secs = runner(program)
            if abs(score - want) > 1e-9 * max(1.0, abs(want)):
                raise SystemExit(f"{name}: align score {score} differs from Biopython's {want} ({title})")
            row += f" {secs * 1e3:8.1f} ({secs / bio_secs:4.1f}x)"
        print(row)
    print("All scores equal Biopython's.")


if __name__ == "__main__":
    main()
