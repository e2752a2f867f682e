#!/usr/bin/env bash
# One command for a GPU segment of the small pair: lin_cae_small and m2l_small trained side by
# side on a data bundle (recipes/tools/make_data_bundle.py), the presets of the last step both arms
# reached shipped without their EMA shadows, ready to copy into saved_models/.
#
#   bash recipes/tools/gpu_segment.sh BUNDLE MINUTES [--config small_gpu] [--out DIR] [--run DIR] \
#       [train.py arguments for both arms...]
#
# 1. Environment: this checkout's keras_lincae is used through PYTHONPATH (nothing to build or
#    install). Nothing is installed when keras, soundfile, pyyaml, scipy, h5py and numpy import;
#    otherwise the wheels in BUNDLE/wheels (make_data_bundle.py --wheels) are installed into a
#    private folder, and what is still missing comes from PyPI when it is reachable; if not, the
#    script stops with a one-line error naming the packages.
# 2. Training: recipes/tools/train_small_pair.sh --config CONFIG with --data set to the bundle's folders
#    (in bundle.json order) and --max-minutes MINUTES per arm (start-up and compilation included;
#    leave a minute of a device command for the environment check and the shipping). The runs go
#    to --run (default runs/gpu_segment in this checkout); running again on the same machine
#    resumes them.
# 3. Shipping: the presets of the last preset step both arms exported, re-saved without EMA
#    shadows as --out/lin_cae_small and --out/m2l_small (config.json, metadata.json,
#    model.weights.h5), plus --out/summary.json and --out/logs.txt: 8 files, what a device
#    machine's $OUT returns. --out defaults to $OUT when set, else RUN/ship.
# 4. Summary: steps per arm, steps/s, the last common step and each arm's loss there.
#
# Exit status: 0 when both arms trained and a common step was shipped; 1 when training failed or
# no common step exists (what exists is still shipped or summarised); 2 for a usage or
# environment error.
set -euo pipefail
prog=gpu_segment.sh
die() { echo "$prog: error: $*" >&2; exit 2; }
usage="usage: bash recipes/tools/gpu_segment.sh BUNDLE MINUTES [--config NAME] [--out DIR] [--run DIR] [train.py args]"
(($# >= 2)) || die "$usage"
bundle=$1
minutes=$2
shift 2
config=small_gpu
out=${OUT:-}
run=
args=()
while (($#)); do
  case $1 in
    --config|--out|--run) (($# >= 2)) || die "$1 needs a value"; declare "${1#--}=$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$(dirname "$here")")
[[ -f $bundle/bundle.json ]] || die "$bundle is not a data bundle (no bundle.json); make one with: python recipes/tools/make_data_bundle.py DIR"
[[ $minutes =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] || die "MINUTES must be a positive number, got '$minutes'"
bundle=$(cd "$bundle" && pwd)
run=${run:-$repo/runs/gpu_segment}
out=${out:-$run/ship}
mkdir -p "$run" "$out" || die "cannot create $run or $out"
run=$(cd "$run" && pwd)
out=$(cd "$out" && pwd)
py=${PYTHON:-$(command -v python3 || command -v python || true)}
[[ -n $py ]] || die "no python3 on PATH"
export PYTHON=$py KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}  # this checkout's keras_lincae
t0=$SECONDS

# ------------------------------------------------------------------------------------ environment
missing() {  # pip names of the packages that do not import
  "$py" - 2>/dev/null <<'EOF' || echo "numpy scipy pyyaml h5py soundfile keras"
import importlib
bad = []
for module, name in [("numpy", "numpy"), ("scipy.signal", "scipy"), ("yaml", "pyyaml"), ("h5py", "h5py"),
                     ("soundfile", "soundfile"), ("keras", "keras")]:
    try:
        importlib.import_module(module)
    except Exception:
        bad.append(name)
print(" ".join(bad))
EOF
}
"$py" -c "import $KERAS_BACKEND" 2>/dev/null || die "KERAS_BACKEND=$KERAS_BACKEND, but $KERAS_BACKEND does not import with $py"
need=$(missing)
if [[ -n $need ]]; then
  if compgen -G "$bundle/wheels/*.whl" >/dev/null; then
    site=$run/site
    echo "$prog: missing $need; installing the bundle's wheels into $site"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "$bundle"/wheels/*.whl || die "installing $bundle/wheels/*.whl failed"
    export PYTHONPATH=$PYTHONPATH:$site
    need=$(missing)
  fi
  if [[ -n $need ]]; then
    echo "$prog: missing $need; trying PyPI"
    "$py" -m pip install -q --retries 0 --timeout 15 $need >&2 ||
      die "missing Python packages: $need, and pip could not install them (no network?); carry them as wheels in the bundle (make_data_bundle.py --wheels DIR, see docs/training.md, 'GPU segment')"
    need=$(missing)
    [[ -z $need ]] || die "still missing after pip install: $need"
  fi
fi
echo "$prog: environment ready in $((SECONDS - t0)) s ($("$py" -c "import keras; print('keras', keras.__version__)" 2>/dev/null), backend $KERAS_BACKEND)"

# --------------------------------------------------------------------------------------- training
mapfile -t folders < <("$py" - "$bundle" <<'EOF'
import json, os, sys
with open(os.path.join(sys.argv[1], "bundle.json")) as f:
    print("\n".join(os.path.join(sys.argv[1], s["folder"]) for s in json.load(f)["sources"]))
EOF
)
((${#folders[@]})) || die "$bundle/bundle.json lists no sources"
data=(--data "${folders[@]}")
for arg in ${args[@]+"${args[@]}"}; do
  if [[ $arg == --data ]]; then data=(); fi  # the caller's --data wins
done
echo "$prog: training both arms for $minutes min (--config $config) on ${folders[*]} in $run"
status=0
bash "$here/train_small_pair.sh" "$run" "$minutes" --config "$config" ${data[@]+"${data[@]}"} \
  ${args[@]+"${args[@]}"} || status=$?

# --------------------------------------------------------------------------------------- shipping
ship=0
"$py" - "$run" "$out" "$bundle" "$config" "$minutes" "$status" "$here" <<'EOF' || ship=$?
import json, os, re, sys

run, out, bundle, config, minutes, status, recipes = sys.argv[1:8]
with open(os.path.join(run, "summary.json")) as f:
    summary = json.load(f)
summary.update(config=config, bundle=bundle, train_small_pair_status=int(status), shipped={})
with open(os.path.join(bundle, "bundle.json")) as f:
    manifest = json.load(f)
summary["bundle_sources"] = [{k: s[k] for k in ("name", "files", "seconds", "bytes")} for s in manifest["sources"]]

ansi = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
lines = []
for name in summary["arms"]:
    with open(os.path.join(run, f"{name}.log"), errors="replace") as f:
        text = ansi.sub("", f.read())
    lines.append(f"===== {name}.log")
    previous = None
    for line in re.split(r"[\r\n\x08]+", text):
        line = line.rstrip()
        if line and line != previous:
            lines.append(line)
        previous = line
with open(os.path.join(out, "logs.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")

common = summary["common_step"]
if common is not None:
    from keras_lincae import entry

    entry.prepare("gpu_segment.sh")
    sys.path.insert(0, recipes)
    from ship_preset import _without_ema_shadows

    from keras_lincae import LinCAE

    for name, source in summary["common_presets"].items():
        with open(os.path.join(source, "metadata.json")) as f:
            meta = json.load(f)
        model = _without_ema_shadows(LinCAE.from_preset(source))
        target = os.path.join(out, name)
        model.save_to_preset(
            target, overwrite=True, training_step=meta.get("training_step"),
            training_config=meta.get("training_config"), weights=meta.get("weights"),
            segment=dict(config=config, minutes=float(minutes), source=source,
                         data=[f"{s['name']} (bundle: {s['files']} OGG files, {s['seconds'] / 60:.1f} min)"
                               for s in manifest["sources"]]))
        summary["shipped"][name] = target
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
if common is None:
    sys.exit(3)
EOF
echo "$prog: done in $(((SECONDS - t0) / 60)) min $(((SECONDS - t0) % 60)) s"
if ((ship == 0)); then
  echo "shipped step $("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["common_step"])' "$out/summary.json"): $out/lin_cae_small $out/m2l_small (no EMA shadows; copy their three files into saved_models/<arm>/)"
elif ((ship == 3)); then
  echo "$prog: nothing shipped: no preset step reached by both arms (summary and logs in $out)" >&2
  exit 1
else
  echo "$prog: shipping failed (summary and logs in $run)" >&2
  exit 1
fi
((status == 0)) || { echo "$prog: an arm failed; the common step was shipped anyway (logs in $out/logs.txt)" >&2; exit 1; }
