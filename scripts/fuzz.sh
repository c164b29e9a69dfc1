#!/usr/bin/env bash
# A longer hunt for inputs that give a traceback instead of one line and exit 1:
# the suite's property tests (graphs, configs, confs, base archives, layering) in rounds
# of LAYERED_IMAGE_EXAMPLES inputs each, each round with a new seed, until SECONDS
# (default 600) have passed. A failure stops the hunt and prints the seed and input to
# reproduce it; hypothesis also keeps it in .hypothesis/ and tries it first next time.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-600}
export LAYERED_IMAGE_EXAMPLES=${LAYERED_IMAGE_EXAMPLES:-1000}
python=${PYTHON:-python3}
[ -x .venv/bin/python ] && python=.venv/bin/python
targets=(tests/test_bad_input_properties.py
         tests/test_hostile_base_images.py::test_mutated_base_archives_give_an_image_or_one_line
         tests/test_layering.py::test_layering_invariants)
end=$((SECONDS + budget)); round=0
while ((SECONDS < end)); do
  round=$((round + 1)); seed=$RANDOM$RANDOM
  echo "fuzz round $round, seed $seed, $((end - SECONDS)) s left"
  "$python" -m pytest -q -x -p no:cacheprovider --hypothesis-seed="$seed" "${targets[@]}" \
    || { echo "fuzz: failure in round $round; rerun with --hypothesis-seed=$seed"; exit 1; }
done
echo "fuzz: $round rounds, no failure in ${budget} s"
