#!/usr/bin/env bash
# Regenerate every committed result in benchmarks/results/ and the README tables
# built from them. Run on a quiet machine (nothing else busy): the ratios are
# measured within each run, but noise still widens the spreads. Takes about
# forty minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"

python benchmarks/paillier_speed.py --json "$out/paillier_speed.json" --markdown "$out/paillier_speed.md"
python benchmarks/ckks_speed.py --json "$out/ckks_speed.json" --markdown "$out/ckks_speed.md"
python benchmarks/ckks_large.py --json "$out/ckks_large.json" --markdown "$out/ckks_large.md"
python benchmarks/commitment_proof.py --json "$out/commitment_proof.json" --markdown "$out/commitment_proof.md"
python benchmarks/batch_verify.py --json "$out/batch_verify.json" --markdown "$out/batch_verify.md"
python benchmarks/threshold.py --json "$out/threshold.json" --markdown "$out/threshold.md"
python benchmarks/dp_repeats.py --json "$out/dp_repeats.json" --markdown "$out/dp_repeats.md"
python benchmarks/dp_sampled.py --json "$out/dp_sampled.json" --markdown "$out/dp_sampled.md"
python benchmarks/dp_tradeoff.py --json "$out/dp_tradeoff.json" --markdown "$out/dp_tradeoff.md" --plot "$out/dp_tradeoff.png"
python benchmarks/scale.py --json "$out/scale.json" --markdown "$out/scale.md"
python benchmarks/estimate_accuracy.py --json "$out/estimate_accuracy.json" --markdown "$out/estimate_accuracy.md"
python benchmarks/optimizers.py --json "$out/optimizers.json" --markdown "$out/optimizers.md"
python benchmarks/phe_example.py --json "$out/phe_example.json" --markdown "$out/phe_example.md"
HE_FED_CACHE_DIR="$(mktemp -d)" he-fed bench --full --json "$out/bench.json" --csv "$out/bench.csv" \
    --markdown "$out/bench.md" --plot "$out"
python benchmarks/update_readme.py
