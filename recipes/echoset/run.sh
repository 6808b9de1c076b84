#!/usr/bin/env bash
# echoset recipe: prepare -> train -> evaluate -> report (see ../run_recipe.sh and README.md).
#   ./run.sh --root /path/to/your/copy                       # all stages, CPU, model tiger
#   ./run.sh --root /path/to/your/copy --model convtasnet --ngpu 4 --gpus 0,1,2,3
#   ./run.sh --stage 3 --model tiger   # evaluate an existing run again
set -euo pipefail
dataset=echoset
default_model=tiger
default_sample_rate=16000
default_mode=""
default_task=sep_reverb_noisy
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$recipe_dir/../run_recipe.sh"
