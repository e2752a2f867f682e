#!/usr/bin/env bash
# Train lin_cae_small and its m2l_small baseline side by side on one machine (one GPU shared by
# two JAX processes), identically: same config, data, seed and wall budget. Each arm exports an
# EMA preset every `export_preset_every` steps; the script ends with a summary (steps per arm,
# steps/s, loss) naming the last step both arms reached, so the pair compared is always trained
# for the same number of steps.
#
#   bash recipes/tools/train_small_pair.sh OUT MINUTES [train.py arguments for both arms...]
#   e.g. bash recipes/tools/train_small_pair.sh runs/pair 7.5 --config small_gpu \
#            --data DATA/synth_numpy/train DATA/synth_fluidsynth/train DATA/recorded/train
#
# The lin_cae arm uses `--config X`, the m2l arm `--config m2l_X` (default X: small_gpu; for a
# YAML file DIR/X.yaml the m2l arm's is DIR/m2l_X.yaml); both start from the shipped CPU-trained
# presets of the same name (`--set init_weights=...` after the config; a later `--set` wins).
# Rerun with the same OUT to resume (the saved configs are kept; only MINUTES applies). Each
# arm's output is appended to OUT/<arm>.log; the summary is also written to OUT/summary.json.
# Exit status: 0 when both arms ran and share a preset step, 1 otherwise (the summary still says
# how far each arm got). PYTHON picks the interpreter (default: python3, else python).
set -euo pipefail
usage="usage: train_small_pair.sh OUT MINUTES [--config NAME|FILE.yaml] [train.py args]"
out=${1:?$usage}
minutes=${2:?$usage}
shift 2
config=small_gpu
args=()
while (($#)); do
  if [[ $1 == --config ]]; then config=${2:?$usage}; shift 2; else args+=("$1"); shift; fi
done
if [[ $config == */* || $config == *.yaml ]]; then
  m2l_config=$(dirname "$config")/m2l_$(basename "$config")
else
  m2l_config=m2l_$config
fi
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$(command -v python3 || command -v python)}
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}  # two processes, one GPU
mkdir -p "$out"
arms=(lin_cae_small m2l_small)
configs=("$config" "$m2l_config")
started=$(date +%s.%N)
pids=()
for k in 0 1; do
  name=${arms[k]}
  run=$out/$name
  echo "=== $(date '+%Y-%m-%d %H:%M:%S') segment of $minutes min" >>"$out/$name.log"
  if [[ -f $run/config.yaml ]]; then
    "$py" "$here/../train.py" --out "$run" --resume --max-minutes "$minutes" >>"$out/$name.log" 2>&1 &
  else
    "$py" "$here/../train.py" --config "${configs[k]}" --out "$run" --max-minutes "$minutes" \
      --set "init_weights=$name" ${args[@]+"${args[@]}"} >>"$out/$name.log" 2>&1 &
  fi
  pids+=($!)
done
codes=()
for pid in "${pids[@]}"; do
  code=0
  wait "$pid" || code=$?
  codes+=("$code")
done
for k in 0 1; do
  if ((codes[k] != 0)); then
    echo "${arms[k]} failed (exit status ${codes[k]}); the end of $out/${arms[k]}.log:" >&2
    tail -n 5 "$out/${arms[k]}.log" | tr '\r\b' '\n\n' | grep -v '^\s*$' | tail -n 5 >&2
  fi
done
# The summary: steps per arm (this segment and in all), steps/s, the last preset step both arms
# exported and each arm's logged loss there.
summary=0
"$py" - "$out" "$minutes" "$started" "${codes[@]}" <<'EOF' || summary=$?
import json, os, re, sys, time

out, minutes, started = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
codes = [int(c) for c in sys.argv[4:6]]
ansi = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
progress = re.compile(r"^\s*(\d+)/\d+\b.*?\bloss: (\S+) - steps/s: (\S+)")


def steps_in(folder, pattern):
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(re.compile(pattern).fullmatch, names) if m)


arms = {}
for name, code in zip(("lin_cae_small", "m2l_small"), codes):
    log = os.path.join(out, f"{name}.log")
    with open(log, errors="replace") as f:
        text = ansi.sub("", f.read())
    segment = text.rsplit("\n=== ", 1)[-1]  # this segment's part of the appended log
    losses = {}
    for line in re.split(r"[\r\n\x08]+", text):
        m = progress.match(line)
        if m:
            losses[int(m.group(1))] = float(m.group(2))
    rates = [float(m.group(3)) for m in map(progress.match, re.split(r"[\r\n\x08]+", segment)) if m]
    begun = re.search(r"resumed from step (\d+)", segment)
    start = int(begun.group(1)) if begun else 0
    checkpoints = steps_in(os.path.join(out, name, "checkpoints"), r"ckpt-(\d+)\.npz")
    end = checkpoints[-1] if checkpoints else start
    wall = max(os.path.getmtime(log) - started, 1e-9)
    arms[name] = dict(
        exit_status=code, start_step=start, end_step=end, steps=end - start, wall_s=round(wall, 1),
        steps_per_s=round((end - start) / wall, 3),  # start-up and compilation included
        # the median logged rate (the first interval, with the compilation, left out when others exist)
        steps_per_s_logged=sorted(rates[1:] or rates)[len(rates[1:] or rates) // 2] if rates else None,
        finished=os.path.isdir(os.path.join(out, name, "preset")),
        presets=steps_in(os.path.join(out, name, "presets"), r"step_(\d+)"),
        losses=sorted(losses.items()))
common = sorted(set(arms["lin_cae_small"]["presets"]) & set(arms["m2l_small"]["presets"]))
common = common[-1] if common else None
for arm in arms.values():
    logged = [(s, l) for s, l in arm.pop("losses") if common is not None and s <= common]
    arm["loss_at_common"] = dict(step=logged[-1][0], loss=logged[-1][1]) if logged else None
summary = dict(out=os.path.abspath(out), minutes=minutes, common_step=common, arms=arms,
               common_presets={n: os.path.join(os.path.abspath(out), n, "presets", f"step_{common}")
                               for n in arms} if common is not None else None,
               time=time.strftime("%Y-%m-%dT%H:%M:%S"))
with open(os.path.join(out, "summary.json.tmp"), "w") as f:
    json.dump(summary, f, indent=1)
os.replace(os.path.join(out, "summary.json.tmp"), os.path.join(out, "summary.json"))

print(f"summary of {out} ({minutes:g} min per arm):")
for name, a in arms.items():
    rate = f"{a['steps_per_s_logged']:.3g} steps/s logged, " if a["steps_per_s_logged"] is not None else ""
    loss = a["loss_at_common"]
    loss = (f"loss {loss['loss']:.4f} (logged at step {loss['step']})" if loss else "no loss logged")
    state = ("finished" if a["finished"] else f"exit status {a['exit_status']}" if a["exit_status"]
             else "stopped by the time limit")
    presets = a["presets"]
    presets = (f"presets {presets[0]}..{presets[-1]}" if len(presets) > 1 else f"preset {presets[0]}" if presets
               else "no preset")
    print(f"  {name:<14} steps {a['start_step']} -> {a['end_step']} ({a['steps']} in {a['wall_s'] / 60:.1f} min: "
          f"{rate}{a['steps_per_s']:.3g} overall), {state}, {presets}; {loss}")
if common is None:
    print("  no preset step reached by both arms")
    sys.exit(3)
print(f"common step: {common} ({' '.join(summary['common_presets'].values())})")
EOF
[[ ${codes[0]} == 0 && ${codes[1]} == 0 ]] || { echo "an arm failed (logs in $out)" >&2; exit 1; }
((summary == 0)) || { echo "no preset step reached by both arms (logs in $out)" >&2; exit 1; }
