"""Write a deterministic random FASTA file for the sequence-kernel benchmarks.

    python bench/make_fasta.py OUT.fa [--mb 100] [--seed 42]

Records have lengths drawn between 1 and 40 kb (so a per-record table has
thousands of rows), 60-column lines, upper-case ACGT with an occasional run of
N and a soft-masked (lower-case) stretch, like an assembly.  The same
arguments always give the same bytes.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

_ACGT = bytes.maketrans(bytes(range(256)), b"ACGT" * 64)


def make_fasta(path: Path, mb: float = 100.0, seed: int = 42) -> int:
    """Write about `mb` megabytes (10**6 bytes) of FASTA to `path`; return its size."""
    rng = random.Random(seed)
    target = int(mb * 1_000_000)
    written = 0
    n = 0
    with open(path, "wb") as out:
        while written < target:
            n += 1
            length = rng.randint(1_000, 40_000)
            seq = bytearray(rng.randbytes(length).translate(_ACGT))
            if rng.random() < 0.3:  # a gap of Ns
                a = rng.randrange(length)
                seq[a:a + 100] = b"N" * len(seq[a:a + 100])
            if rng.random() < 0.3:  # a soft-masked repeat
                a = rng.randrange(length)
                seq[a:a + 500] = bytes(seq[a:a + 500]).lower()
            header = f">seq{n} sample=bench length={length}\n".encode()
            body = b"\n".join(bytes(seq[i:i + 60]) for i in range(0, length, 60)) + b"\n"
            out.write(header)
            out.write(body)
            written += len(header) + len(body)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    size = make_fasta(args.out, args.mb, args.seed)
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
