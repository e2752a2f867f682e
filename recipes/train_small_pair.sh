#!/usr/bin/env bash
# Train lin_cae_small and its m2l_small baseline side by side on one machine (one GPU shared by
# two JAX processes), identically: same config, data, seed and wall budget. Each arm exports an
# EMA preset every `export_preset_every` steps; the script ends by naming the last step both arms
# reached, so the pair compared is always trained for the same number of steps.
#
#   bash recipes/train_small_pair.sh OUT MINUTES [train.py arguments for both arms...]
#   e.g. bash recipes/train_small_pair.sh runs/pair 7.5 --config small_gpu \
#            --data DATA/synth_numpy/train DATA/synth_fluidsynth/train DATA/recorded/train
#
# The lin_cae arm uses `--config X`, the m2l arm `--config m2l_X` (default X: small_gpu); both
# start from the shipped CPU-trained presets of the same name. Rerun with the same OUT to resume.
set -euo pipefail
out=${1:?usage: train_small_pair.sh OUT MINUTES [train.py args]}
minutes=${2:?usage: train_small_pair.sh OUT MINUTES [train.py args]}
shift 2
config=small_gpu
args=()
while (($#)); do
  if [[ $1 == --config ]]; then config=$2; shift 2; else args+=("$1"); shift; fi
done
here=$(cd "$(dirname "$0")" && pwd)
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}  # two processes, one GPU
mkdir -p "$out"
pids=()
for arm in lin_cae_small:$config m2l_small:m2l_$config; do
  name=${arm%%:*}
  arm_config=${arm#*:}
  run=$out/$name
  if [[ -f $run/config.yaml ]]; then
    python "$here/train.py" --out "$run" --resume --max-minutes "$minutes" >"$out/$name.log" 2>&1 &
  else
    python "$here/train.py" --config "$arm_config" --out "$run" --max-minutes "$minutes" \
      --set "init_weights=$name" "${args[@]}" >"$out/$name.log" 2>&1 &
  fi
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
tail -n 5 "$out"/*.log
((status == 0)) || { echo "an arm failed (logs in $out)" >&2; exit 1; }
common=$(comm -12 <(ls "$out/lin_cae_small/presets" | sort) <(ls "$out/m2l_small/presets" | sort) \
  | sed -n 's/^step_//p' | sort -n | tail -n 1)
[[ -n $common ]] || { echo "no preset step reached by both arms" >&2; exit 1; }
echo "common step: $common ($out/lin_cae_small/presets/step_$common, $out/m2l_small/presets/step_$common)"
