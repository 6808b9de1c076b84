#!/usr/bin/env bash
# libri3mix recipe: prepare -> train -> evaluate -> report (see ../run_recipe.sh and README.md).
#   ./run.sh --root /path/to/your/copy                       # all stages, CPU, model convtasnet
#   ./run.sh --root /path/to/your/copy --model convtasnet --ngpu 4 --gpus 0,1,2,3
#   ./run.sh --stage 3 --model convtasnet   # evaluate an existing run again
set -euo pipefail
dataset=libri3mix
default_model=convtasnet
default_sample_rate=8000
default_mode=min
default_task=sep_clean
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$recipe_dir/../run_recipe.sh"
