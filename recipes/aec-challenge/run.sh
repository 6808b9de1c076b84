#!/usr/bin/env bash
# aec-challenge recipe: prepare -> train -> evaluate -> report (see ../run_recipe.sh and README.md).
#   ./run.sh --root /path/to/your/copy                       # all stages, CPU, model d3net-aec
#   ./run.sh --root /path/to/your/copy --model convtasnet --ngpu 4 --gpus 0,1,2,3
#   ./run.sh --stage 3 --model d3net-aec   # evaluate an existing run again
set -euo pipefail
dataset=aec-challenge
default_model=d3net-aec
default_sample_rate=16000
default_mode=""
default_task=aec
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$recipe_dir/../run_recipe.sh"
