# Stages shared by every recipes/<dataset>/run.sh, which sets the corpus defaults and sources
# this file with its arguments. Not run directly.
#
#   stage 1  prepare   audiomask prepare DATASET ROOT --out DATA   (validate the copy, write manifests)
#   stage 2  train     audiomask train <model>.yaml …  (torchrun for --ngpu > 1; resumes from its out dir)
#   stage 3  evaluate  audiomask evaluate on the test manifest (AEC: python -m audiomask.corpora.aec_eval)
#   stage 4  report    a markdown results row in EXP/RESULTS.md
#
# Every stage can be re-run: stage 1 is skipped when DATA/prepare.json records the same options,
# stage 2 continues from the last checkpoint (a finished run stays finished), stage 3 is skipped
# when its scores are newer than the checkpoint, stage 4 replaces its row.
#
# Set by the caller: dataset, recipe_dir, default_model, default_sample_rate, default_mode,
# default_task, and optionally model_sample_rates ("model:rate …", models trained at another rate
# than the corpus default, e.g. "tiger:16000"). Environment: PYTHON (default python), AUDIOMASK (default audiomask), TORCHRUN
# (default torchrun): point them at a virtual environment's executables if needed.

PYTHON=${PYTHON:-python}
AUDIOMASK=${AUDIOMASK:-audiomask}
TORCHRUN=${TORCHRUN:-torchrun}

usage() {
  cat <<EOF
usage: $0 --root CORPUS [options] [section.key=value ...]

  --root PATH          your copy of the corpus (needed by stage 1)
  --stage N            first stage to run (default 1): 1 prepare, 2 train, 3 evaluate, 4 report
  --stop-stage M       last stage to run (default 4)
  --model NAME         config recipes/$dataset/NAME.yaml (default $default_model; available: $(available_models))
  --ngpu K             GPUs to train on (default: the number of --gpus, else 0 = CPU); K > 1 uses torchrun
  --gpus IDS           comma-separated GPU ids, e.g. 0,1 (default: 0..K-1)
  --sample-rate HZ     corpus version to prepare (default $default_sample_rate${model_sample_rates:+; $model_sample_rates})
  --mode min|max       mixture length version (default ${default_mode:-none})
  --task NAME          which mixtures and targets (default ${default_task}; see audiomask prepare --help)
  --train-split NAME   LibriMix only: train-100 or train-360
  --data-dir DIR       manifests (default recipes/$dataset/data/wav<rate>k_<mode>_<task>)
  --exp-dir DIR        experiments (default recipes/$dataset/exp); a run goes to EXP/MODEL[_TAG]
  --tag TAG            experiment name suffix
  --no-pesq            evaluate without PESQ/STOI (they are slow)
  section.key=value    passed to audiomask train (e.g. optim.batch_size=2 run.amp=bf16)
EOF
}

available_models() {
  local f names=()
  for f in "$recipe_dir"/*.yaml; do [[ -e $f ]] && names+=("$(basename "$f" .yaml)"); done
  echo "${names[*]}"
}

die() { echo "$0: error: $*" >&2; exit 2; }

json_get() {  # json_get FILE KEY: a top-level value of a JSON file ("" when absent or null)
  "$PYTHON" -c 'import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if v is None else v)' "$1" "$2"
}

stage=1; stop_stage=4; model=$default_model; root=""; ngpu=""; gpus=""; tag=""
sample_rate=""; mode=$default_mode; task=$default_task; train_split=""
data_dir=""; exp_dir="$recipe_dir/exp"; no_pesq=false
overrides=()
command_line="$0 $*"
while [[ $# -gt 0 ]]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    --ngpu) ngpu=$2; shift 2 ;;
    --gpus) gpus=$2; shift 2 ;;
    --sample-rate) sample_rate=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --task) task=$2; shift 2 ;;
    --train-split) train_split=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --no-pesq) no_pesq=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

[[ $stage =~ ^[1-4]$ && $stop_stage =~ ^[1-4]$ ]] || die "--stage and --stop-stage must be 1 to 4"
if [[ -n $gpus && -z $ngpu ]]; then
  IFS=, read -r -a _ids <<< "$gpus"; ngpu=${#_ids[@]}
fi
ngpu=${ngpu:-0}
[[ $ngpu =~ ^[0-9]+$ ]] || die "--ngpu must be a number, got '$ngpu'"
if (( ngpu > 0 )); then
  if [[ -z $gpus ]]; then gpus=$(seq -s, 0 $((ngpu - 1))); fi
  IFS=, read -r -a _ids <<< "$gpus"
  (( ${#_ids[@]} == ngpu )) || die "--ngpu $ngpu but --gpus $gpus names ${#_ids[@]} GPU(s)"
  export CUDA_VISIBLE_DEVICES=$gpus
fi
config="$recipe_dir/$model.yaml"
if [[ -z $sample_rate ]]; then  # the model's rate where the recipe names one, else the corpus default
  sample_rate=$default_sample_rate
  for _pair in ${model_sample_rates:-}; do if [[ ${_pair%%:*} == "$model" ]]; then sample_rate=${_pair#*:}; fi; done
fi
[[ -n $data_dir ]] || data_dir="$recipe_dir/data/wav$((sample_rate / 1000))k${mode:+_$mode}_$task${train_split:+_$train_split}"
[[ -f $config ]] || die "no config $config (models for $dataset: $(available_models))"
mkdir -p "$data_dir" "$exp_dir"
data_dir=$(cd "$data_dir" && pwd)   # absolute: config paths are resolved against the config's folder
exp_dir=$(cd "$exp_dir" && pwd)
name=$model${tag:+_$tag}
exp="$exp_dir/$name"
summary="$data_dir/prepare.json"
runs() { (( stage <= $1 && $1 <= stop_stage )); }

if runs 1; then
  echo "== stage 1: prepare $dataset -> $data_dir"
  if [[ -f $summary && $(json_get "$summary" dataset) == "$dataset" \
        && $(json_get "$summary" sample_rate) == "$sample_rate" && $(json_get "$summary" mode) == "$mode" \
        && $(json_get "$summary" task) == "$task" \
        && ( -z $train_split || $(json_get "$summary" train) == "$train_split" ) ]]; then
    echo "   $summary already records this preparation; skipping (delete it to re-check the corpus)"
  else
    [[ -n $root ]] || die "stage 1 needs --root (your copy of the corpus)"
    args=(prepare "$dataset" "$root" --out "$data_dir" --sample-rate "$sample_rate" --task "$task")
    [[ -n $mode ]] && args+=(--mode "$mode")
    [[ -n $train_split ]] && args+=(--train-split "$train_split")
    "$AUDIOMASK" "${args[@]}"
  fi
fi

if runs 2 || runs 3 || runs 4; then
  [[ -f $summary ]] || die "$summary not found: run stage 1 first (--stage 1 --root CORPUS)"
  kind=$(json_get "$summary" kind)
  test_split=$(json_get "$summary" test)
fi

if runs 2; then
  echo "== stage 2: train $model on $dataset -> $exp"
  args=("run.out_dir=$exp")
  if [[ $kind == aec ]]; then
    args+=("data.aec_dir=$(json_get "$summary" corpus_dir)")
  else
    args+=("data.train_manifest=$data_dir/$(json_get "$summary" train).csv"
           "data.valid_manifest=$data_dir/$(json_get "$summary" valid).csv")
  fi
  (( ngpu == 0 )) && args+=("run.device=cpu")
  args+=(${overrides[@]+"${overrides[@]}"})
  if (( ngpu > 1 )); then
    "$TORCHRUN" --standalone --nproc-per-node "$ngpu" -m audiomask train "$config" "${args[@]}"
  else
    "$AUDIOMASK" train "$config" "${args[@]}"
  fi
fi

if runs 3 || runs 4; then
  checkpoint="$exp/best.safetensors"
  [[ -f $checkpoint ]] || checkpoint="$exp/last.safetensors"
  eval_dir="$exp/eval_$test_split"
fi

if runs 3; then
  echo "== stage 3: evaluate $checkpoint on $test_split"
  [[ -f $checkpoint ]] || die "no checkpoint in $exp: run stage 2 first"
  device=cpu; (( ngpu > 0 )) && device=cuda
  if [[ -f $eval_dir/per_utterance.csv && $eval_dir/per_utterance.csv -nt $checkpoint ]]; then
    echo "   $eval_dir/per_utterance.csv is newer than the checkpoint; skipping"
  elif [[ $kind == aec ]]; then
    args=(--model "$checkpoint" --data "$data_dir/$test_split.csv" --out "$eval_dir" --device "$device")
    $no_pesq && args+=(--no-pesq)
    "$PYTHON" -m audiomask.corpora.aec_eval "${args[@]}"
  else
    args=(evaluate --model "$checkpoint" --data "$data_dir/$test_split.csv" --out "$eval_dir" --device "$device")
    $no_pesq && args+=(--no-pesq)
    "$AUDIOMASK" "${args[@]}"
  fi
fi

if runs 4; then
  echo "== stage 4: report"
  "$PYTHON" "$recipe_dir/../report.py" --eval "$eval_dir" --prepare "$summary" --name "$name" \
    --checkpoint "$checkpoint" --results "$exp_dir/RESULTS.md" --command "$command_line"
fi
