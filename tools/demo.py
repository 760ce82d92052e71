#!/usr/bin/env python
"""`make demo`: the short version of the benchmark on the built-in synthetic data, on CPU.

1. generates the synthetic domains SynthA (source, labelled) and SynthB (target, unlabelled) in
   Market-1501's layout if absent;
2. trains fast-reid's supervised Baseline on SynthA and tests it on SynthB (direct transfer);
3. adapts it to SynthB with cluster pseudo-labels, and with pseudo-labels + CANU's camera
   discriminator conditioned on the pseudo-identity centroid;
4. trains ACAN on SynthB's intra-camera labels, triplet only and with OCE;
5. prints the table (target mAP/R1, MI between pseudo-labels and cameras, camera-probe accuracy,
   d_inter-camera, ...) and the paths of its plots.

It is ``tools/benchmark.py`` with five methods and one seed (same budget per row, seeded); finished
runs are not redone. The full sweep is ``make bench``.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark  # noqa: E402  (tools/benchmark.py)

METHODS = ["source", "pseudo", "canu", "acan_triplet", "acan_oce"]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    start = time.time()
    benchmark.main(["--methods", *METHODS, "--seeds", "0", "--output", "logs/demo", "--eval-period", "0", *argv])
    print(f"\ndemo wall time: {time.time() - start:.0f} s")


if __name__ == "__main__":
    benchmark.cli(main)
