#!/usr/bin/env bash
# libri2mix recipe: prepare -> train -> evaluate -> report (see ../run_recipe.sh and README.md).
#   ./run.sh --root /path/to/your/copy                       # all stages, CPU, model mossformer2
#   ./run.sh --root /path/to/your/copy --model convtasnet --ngpu 4 --gpus 0,1,2,3
#   ./run.sh --stage 3 --model mossformer2   # evaluate an existing run again
set -euo pipefail
dataset=libri2mix
default_model=mossformer2
default_sample_rate=8000
default_mode=min
default_task=sep_clean
model_sample_rates="tiger:16000"   # TIGER is a 16 kHz model (the authors train on wav16k)
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$recipe_dir/../run_recipe.sh"
