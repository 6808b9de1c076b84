#!/usr/bin/env bash
# wsj0-2mix recipe: prepare -> train -> evaluate -> report (see ../run_recipe.sh and README.md).
#   ./run.sh --root /path/to/your/copy                       # all stages, CPU, model mossformer2
#   ./run.sh --root /path/to/your/copy --model convtasnet --ngpu 4 --gpus 0,1,2,3
#   ./run.sh --stage 3 --model mossformer2   # evaluate an existing run again
set -euo pipefail
dataset=wsj0-2mix
default_model=mossformer2
default_sample_rate=8000
default_mode=min
default_task=sep_clean
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$recipe_dir/../run_recipe.sh"
