"""One-command accelerator benchmark: every installed Keras backend vs the official code, one table.

    bash benchmarks/gpu.sh            # full lin_cae architecture, 10 s clips, batch 8
    bash benchmarks/gpu.sh --quick    # tiny settings (reduced architecture): a rehearsal on CPU

Runs `inference.py` for float32 and bfloat16 (`mixed_bfloat16` on our side, `torch.autocast`
on the official side), once at batch 1 (encode / 1-step decode latency of one clip) and once at
`--batch` (decoded audio seconds per wall second), then `train_step.py` (float32, reduced
config), on the backends that are installed (jax, tensorflow, torch; the official model always
runs on torch) and on the GPU when each framework sees one. Prints one markdown table, with the
load average and the device each implementation ran on; `--json` keeps the raw results.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FULL = dict(config="full", seconds=10, batch=8, runs=2, train=("--warmup", "3", "--steps", "5", "--repeats", "2", "--rounds", "1"))
QUICK = dict(config="reduced", seconds=1, batch=2, runs=1, train=("--warmup", "1", "--steps", "1", "--repeats", "1", "--rounds", "1"))


def installed_backends():
    return [name for name in ("jax", "tensorflow", "torch") if importlib.util.find_spec(name) is not None]


def run_json(script, flags, workdir, tag):
    """Run `script` with `flags --json PATH`; its parsed JSON (None on failure, stderr tail shown)."""
    path = os.path.join(workdir, f"{tag}.json")
    command = [sys.executable, os.path.join(HERE, script), *flags, "--json", path]
    print(f"[{time.strftime('%H:%M:%S')}] {tag}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.isfile(path):
        print(proc.stdout[-2000:] + proc.stderr[-3000:], file=sys.stderr)
        return None
    with open(path) as f:
        return json.load(f)


def cell(result, key, spec):
    value = (result or {}).get(key)
    return "-" if value is None or not (result or {}).get("ok", True) else format(value, spec)


def table(settings, backends, inference, train):
    """Markdown rows: one per implementation and dtype."""
    seconds, batch = settings["seconds"], settings["batch"]
    head = ("implementation", "dtype", "device", f"encode {seconds:g} s (s)", f"decode {seconds:g} s (s)",
            "decode vs official", f"batch-{batch} decode (audio s/s)", "train step (s)", "decode max rel err")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for dtype in ("float32", "bfloat16"):
        single = (inference.get((dtype, 1)) or {}).get("results", {})
        batched = (inference.get((dtype, batch)) or {}).get("results", {})
        reference = single.get("official", {}).get("decode_s")
        for name in ("official", *backends):
            one, many = single.get(name), batched.get(name)
            steps = (train or {}).get(name, {}).get("step_s") if dtype == "float32" else None
            throughput = "-" if not (many and many.get("ok")) else f"{batch * seconds / many['decode_s']:.2f}"
            ratio = "-" if not (one and one.get("ok") and reference) else f"{reference / one['decode_s']:.2f}x"
            lines.append("| " + " | ".join((
                "official linear_cae" if name == "official" else f"keras-lincae {name}", dtype,
                (one or many or {}).get("device", "-"), cell(one, "encode_s", ".3f"), cell(one, "decode_s", ".3f"),
                ratio, throughput, "-" if not steps else f"{statistics.median(steps):.3f}",
                "-" if name == "official" else cell(one, "decode_err", ".1e"))) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (reduced config, 1 s, batch 2)")
    parser.add_argument("--backends", help="comma-separated Keras backends (default: every installed one)")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    backends = args.backends.split(",") if args.backends else installed_backends()
    start, load_start = time.perf_counter(), "%.2f %.2f %.2f" % os.getloadavg()
    inference = {}
    with tempfile.TemporaryDirectory(prefix="lincae_gpu_") as workdir:
        for dtype in ("float32", "bfloat16"):
            for batch in (1, settings["batch"]):
                flags = ["--config", settings["config"], "--seconds", str(settings["seconds"]), "--batch", str(batch),
                         "--runs", str(settings["runs"]), "--dtype", dtype, "--official-dtype", dtype,
                         "--backends", ",".join(backends)]
                inference[(dtype, batch)] = run_json("inference.py", flags, workdir, f"inference_{dtype}_b{batch}")
        train = run_json("train_step.py", ["--only", "official", *backends, *settings["train"]], workdir, "train_step")
    print(f"\n## keras-lincae vs official linear_cae, {time.strftime('%Y-%m-%d %H:%M')} "
          f"({'quick' if args.quick else 'full'} settings: {settings['config']} config)\n")
    print(table(settings, backends, inference, train))
    print(f"\nencode/decode: median of {settings['runs']} runs after a warm-up, 1-step decode of the official "
          f"latents with the same noise; train step: float32, reduced config (train_step.py), median block.")
    print(f"load average {load_start} at start, {'%.2f %.2f %.2f' % os.getloadavg()} at end; "
          f"{os.cpu_count()} CPUs; total {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"inference": {f"{d}_b{b}": r for (d, b), r in inference.items()}, "train": train}, f, indent=1)


if __name__ == "__main__":
    main()
