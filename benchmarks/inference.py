"""Inference speed of keras-lincae on each Keras backend vs the official torch `linear_cae` model.

    python benchmarks/inference.py --seconds 10 --config full --backends jax,tensorflow,torch

Encode and 1-step decode of mono audio, side by side in one run with the official torch model
holding the same (random, converted) weights:

1. `prepare` subprocess: build the official `Autoencoder` once (random weights,
   `keras_lincae.testing.official_oracle.build_official`), write it in the release layout,
   convert it to a keras-lincae preset with `convert_official_checkpoint`, and write the
   test audio and the decode noise (seeded) to a temporary folder.
2. `official` subprocess: load the release into the official `Autoencoder`, time
   `encode` and the 1-step decode (`forward_generator` + `to_waveform`, the official
   1-step sampler with explicit noise) under `torch.inference_mode` with
   `torch.set_num_threads(os.cpu_count())`; its outputs are the numerical reference.
3. one subprocess per Keras backend (KERAS_BACKEND is fixed per process): load the
   preset, warm up once (compiles: `jax.jit` / `tf.function`; eager `inference_mode` on torch),
   then time `encode(audio)` and `decode(official_latents, noise=noise)`.

On a GPU every model runs there (the official one is moved with `.to("cuda")`; Keras places
tensors itself). `--batch B` encodes and decodes B different clips per call (decoded audio
seconds per second is printed); `--official-dtype bfloat16` runs the official model under
`torch.autocast(bfloat16)` (its outputs stay the reference); `--json` keeps every result.

Every timing is the median of `--runs` runs after the warm-up; decode is fed the official
latents so that its error is the decoder's alone. Each subprocess reports its peak resident
set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`: model, compiled functions and
activations of that process), its CPU time (`ru_utime + ru_stime`) and the max abs error of
its outputs relative to the official ones (`max|ours - official| / max|official|`), so that
speed is never bought with wrong results.

The machine may be shared: the load average is printed before and after each subprocess,
and CPU time (`time.process_time`, all threads of the process) is shown next to wall time.
CPU-time speed-ups are less sensitive to other processes than wall-time speed-ups
(but count spinning worker threads too).

`--profile BACKEND[,BACKEND...]` profiles one extra decode of those backends after its timings
(`torch.profiler` operator table for `torch` / `official`, plus `cProfile` top 15 by
tottime for every backend; on jax/tensorflow cProfile only sees the dispatch of the
compiled function).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
from keras_lincae import entry  # noqa: E402  (imports no framework)
from keras_lincae.testing.official_oracle import PARITY_MAX_RELATIVE_ERROR, max_relative_error  # noqa: E402
SAMPLE_RATE = 44100
SCALE_FACTOR = 33.0
BACKENDS = ("jax", "tensorflow", "torch")


# ----------------------------------------------------------------------------- helpers
def loadavg():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def synthetic_music(seconds, seed=0):
    """Decaying notes with harmonics + soft noise, `(1, samples)` float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    out = np.zeros(n, np.float32)
    note = SAMPLE_RATE // 4
    t = np.arange(note) / SAMPLE_RATE
    for start in range(0, n, note):
        f0 = rng.uniform(80, 800)
        piece = sum(0.15 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 5)) * np.exp(-4 * t)
        out[start : start + note] = piece[: n - start]
    out += 0.003 * rng.standard_normal(n).astype(np.float32)
    return out[None, :]


def timed(fn, runs):
    """Median wall and CPU seconds of `runs` calls; returns (wall, cpu, last output)."""
    walls, cpus, out = [], [], None
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def usage():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss_gb": ru.ru_maxrss * 1024 / 1e9, "cpu_total_s": ru.ru_utime + ru.ru_stime}


def accelerator(backend):
    """'gpu' when `backend` (jax, tensorflow or torch) sees a GPU, else 'cpu'."""
    if backend == "jax":
        import jax

        return "gpu" if jax.default_backend() == "gpu" else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def generator_kwargs(config):
    from keras_lincae.testing import official_oracle

    return official_oracle.LIN_CAE_GENERATOR if config == "full" else official_oracle.REDUCED_GENERATOR


def cprofile_top(fn, n=15):
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stream = io.StringIO()
    pstats.Stats(prof, stream=stream).sort_stats("tottime").print_stats(n)
    return stream.getvalue()


def torch_profile_top(fn, n=15):
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=False) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=n)


# ----------------------------------------------------------------------------- workers
def worker_prepare(args):
    """Build the official model, write the release + converted preset, audio and noise."""
    import torch

    from keras_lincae import convert_official_checkpoint
    from keras_lincae.testing import official_oracle

    generator = generator_kwargs(args.config)
    model = official_oracle.build_official(generator=generator, seed=0, scale_factor=SCALE_FACTOR)
    release = os.path.join(args.workdir, "release")
    official_oracle.write_release(model, release, generator)
    converted = convert_official_checkpoint(release, os.path.join(args.workdir, "preset"), scale_factor=SCALE_FACTOR)
    audio = np.concatenate([synthetic_music(args.seconds, seed=i) for i in range(args.batch)])
    frames = converted.latent_length(audio.shape[-1])
    noise_shape = (args.batch, frames * converted.time_downsampling, 2 * converted.hop_size, converted.data_channels)
    noise = np.random.default_rng(1).standard_normal(noise_shape).astype(np.float32)
    np.savez(os.path.join(args.workdir, "inputs.npz"), audio=audio, noise=noise)
    params = sum(p.numel() for p in model.parameters())
    return {"params_m": params / 1e6, "frames": frames, "noise_shape": list(noise_shape),
            "torch_threads": torch.get_num_threads()}


def worker_official(args):
    import torch
    import yaml
    from linear_cae.inference import Autoencoder

    torch.set_num_threads(os.cpu_count())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=args.official_dtype == "bfloat16")
    release = os.path.join(args.workdir, "release")
    kwargs = {}
    for name in ("frontend", "generator", "diffusion"):
        with open(os.path.join(release, f"{name}_kwargs_last.yaml")) as f:
            kwargs[name] = yaml.safe_load(f)
    model = Autoencoder(kwargs["frontend"], kwargs["generator"], kwargs["diffusion"], scale_factor=SCALE_FACTOR)
    model.load_state_dict(torch.load(os.path.join(release, "autoencoder_inference_model_last.pth"), map_location="cpu"))
    model.to(device).eval()
    inputs = np.load(os.path.join(args.workdir, "inputs.npz"))
    audio = torch.from_numpy(inputs["audio"]).to(device)
    noise = inputs["noise"]

    def encode():
        with torch.inference_mode(), autocast:
            return model.encode(audio).float().cpu().numpy().transpose(0, 2, 1)  # our layout (batch, frames, channels)

    latents = encode()  # warm-up
    z = torch.from_numpy(np.ascontiguousarray(latents.transpose(0, 2, 1))).to(device)
    x = torch.from_numpy(np.ascontiguousarray(noise.transpose(0, 3, 2, 1))).to(device)

    def decode():
        with torch.inference_mode(), autocast:
            sigma = model.generator.sigma_max
            out = model.generator.forward_generator(z / model.scale_factor, x * sigma, sigma)
            return model.frontend.to_waveform(out.float()).cpu().numpy()

    decode()  # warm-up
    enc_wall, enc_cpu, latents = timed(encode, args.runs)
    dec_wall, dec_cpu, decoded = timed(decode, args.runs)
    np.savez(os.path.join(args.workdir, "official.npz"), latents=latents, decoded=decoded)
    result = {"encode_s": enc_wall, "decode_s": dec_wall, "encode_cpu_s": enc_cpu, "decode_cpu_s": dec_cpu,
              "threads": torch.get_num_threads(), "device": accelerator("torch"), "encode_err": 0.0, "decode_err": 0.0}
    if "official" in args.profile.split(","):
        result["profile"] = torch_profile_top(decode) + "\n" + cprofile_top(decode)
    return result


def worker_keras(args):
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.set_num_threads(os.cpu_count())
    from keras_lincae import LinCAE

    overrides = {"dtype": "mixed_bfloat16"} if args.dtype == "bfloat16" else {}
    model = LinCAE.from_preset(os.path.join(args.workdir, "preset"), **overrides)
    inputs = np.load(os.path.join(args.workdir, "inputs.npz"))
    official = np.load(os.path.join(args.workdir, "official.npz"))
    audio, noise, ref_latents = inputs["audio"], inputs["noise"], official["latents"]

    def encode():
        return np.asarray(keras.ops.convert_to_numpy(model.encode(audio)), np.float32)

    def decode():
        return np.asarray(keras.ops.convert_to_numpy(model.decode(ref_latents, noise=noise)), np.float32)

    w0 = time.perf_counter()
    encode()
    encode_warm = time.perf_counter() - w0
    w0 = time.perf_counter()
    decode()
    decode_warm = time.perf_counter() - w0
    enc_wall, enc_cpu, latents = timed(encode, args.runs)
    dec_wall, dec_cpu, decoded = timed(decode, args.runs)
    result = {"encode_s": enc_wall, "decode_s": dec_wall, "encode_cpu_s": enc_cpu, "decode_cpu_s": dec_cpu,
              "encode_warmup_s": encode_warm, "decode_warmup_s": decode_warm,
              "encode_err": max_relative_error(latents, official["latents"]),
              "decode_err": max_relative_error(decoded, official["decoded"]),
              "compute_dtype": model.compute_dtype, "device": accelerator(backend)}
    if backend in args.profile.split(","):
        text = cprofile_top(decode)
        if backend == "torch":
            text = torch_profile_top(decode) + "\n" + text
        result["profile"] = text
    return result


def run_worker(args):
    role = args.worker
    try:
        if role == "prepare":
            result = worker_prepare(args)
        elif role == "official":
            result = worker_official(args)
        else:
            result = worker_keras(args)
        result["ok"] = True
    except Exception as error:  # reported in the table, not fatal to the other backends
        import traceback

        traceback.print_exc()
        result = {"ok": False, "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
    result.update(usage())
    with open(os.path.join(args.workdir, f"result_{role}.json"), "w") as f:
        json.dump(result, f)


# ----------------------------------------------------------------------------- parent
def spawn(role, args, backend=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    env["KERAS_BACKEND"] = backend or "torch"
    if backend or args.official_huge_pages:  # ours as `lincae` and the recipes run
        env = entry.command_environment(backend, env)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", role, "--workdir", args.workdir,
           "--seconds", str(args.seconds), "--config", args.config, "--dtype", args.dtype,
           "--official-dtype", args.official_dtype, "--batch", str(args.batch),
           "--runs", str(args.runs), "--profile", args.profile or ""]
    print(f"[{time.strftime('%H:%M:%S')}] {role}: load average {loadavg()}", flush=True)
    w0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - w0
    path = os.path.join(args.workdir, f"result_{role}.json")
    if os.path.isfile(path):
        with open(path) as f:
            result = json.load(f)
    else:
        result = {"ok": False, "error": f"worker exited with {proc.returncode}"}
    if not result.get("ok"):
        sys.stderr.write(proc.stderr[-4000:])
    result["process_wall_s"] = wall
    print(f"[{time.strftime('%H:%M:%S')}] {role}: done in {wall:.1f} s"
          + ("" if result.get("ok") else f" -- FAILED: {result.get('error')}"), flush=True)
    return result


def fmt(value, spec):
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, spec)


def print_tables(results, official, audio_seconds):
    ref_enc, ref_dec = official.get("encode_s"), official.get("decode_s")
    ref_enc_cpu, ref_dec_cpu = official.get("encode_cpu_s"), official.get("decode_cpu_s")
    header = ("backend", "encode s", "decode s", "enc speed-up", "dec speed-up", "decoded audio s/s",
              "peak RSS GB", "enc max rel err", "dec max rel err")
    cpu_header = ("backend", "encode CPU s", "decode CPU s", "enc CPU speed-up", "dec CPU speed-up",
                  "process CPU s", "process wall s", "warm-up enc/dec s")
    rows, cpu_rows = [], []
    for name, r in results:
        if not r.get("ok"):
            rows.append((name, f"FAILED: {r.get('error')}", "", "", "", "", fmt(r.get("peak_rss_gb"), ".2f"), "", ""))
            cpu_rows.append((name, "FAILED", "", "", "", fmt(r.get("cpu_total_s"), ".1f"),
                             fmt(r.get("process_wall_s"), ".1f"), ""))
            continue
        ratio = lambda ref, x: (ref / x) if ref and x else None  # noqa: E731
        rows.append((name, fmt(r["encode_s"], ".2f"), fmt(r["decode_s"], ".2f"),
                     fmt(ratio(ref_enc, r["encode_s"]), ".2f") + "x", fmt(ratio(ref_dec, r["decode_s"]), ".2f") + "x",
                     fmt(audio_seconds / r["decode_s"], ".2f"), fmt(r["peak_rss_gb"], ".2f"), fmt(r["encode_err"], ".1e"), fmt(r["decode_err"], ".1e")))
        warm = ("-" if "encode_warmup_s" not in r else f"{r['encode_warmup_s']:.1f}/{r['decode_warmup_s']:.1f}")
        cpu_rows.append((name, fmt(r["encode_cpu_s"], ".2f"), fmt(r["decode_cpu_s"], ".2f"),
                         fmt(ratio(ref_enc_cpu, r["encode_cpu_s"]), ".2f") + "x",
                         fmt(ratio(ref_dec_cpu, r["decode_cpu_s"]), ".2f") + "x",
                         fmt(r["cpu_total_s"], ".1f"), fmt(r["process_wall_s"], ".1f"), warm))
    tables = ((header, rows, "wall time (median)"), (cpu_header, cpu_rows, "CPU time (median, all threads)"))
    for head, body, title in tables:
        widths = [max(len(str(row[i])) for row in (head, *body)) for i in range(len(head))]
        line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
        print(f"\n{title}; speed-up = official / backend")
        print(line(head))
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in body:
            print(line(row))


def check_goals(results, official):
    """PASS/FAIL against the float32 goals: every backend at least as fast as the official code on
    encode and decode, the fastest at least 2x on both (2.5x stretch), peak RSS at most 1.3x the
    official's, outputs within the parity tolerance."""
    keras_rows = [(n, r) for n, r in results if n != "official" and r.get("ok")]
    if not official.get("ok") or not keras_rows:
        print("\ngoals: not evaluated (official or every backend failed)")
        return
    speedup = {n: min(official[f"{what}_s"] / r[f"{what}_s"] for what in ("encode", "decode")) for n, r in keras_rows}
    slower = [f"{n} {speedup[n]:.2f}x" for n, _ in keras_rows if speedup[n] < 1.0]
    best = max(speedup, key=speedup.get)
    heavy = [f"{n} {r['peak_rss_gb'] / official['peak_rss_gb']:.2f}x" for n, r in keras_rows
             if r["peak_rss_gb"] > 1.3 * official["peak_rss_gb"]]
    off = [f"{n} {max(r['encode_err'], r['decode_err']):.1e}" for n, r in keras_rows
           if max(r["encode_err"], r["decode_err"]) > PARITY_MAX_RELATIVE_ERROR]
    verdict = lambda failures: "PASS" if not failures else f"FAIL ({', '.join(failures)})"  # noqa: E731
    print("\ngoals (wall time; a backend's speed-up is the lower of encode and decode):")
    print(f"  every backend at least as fast as official on encode and decode: {verdict(slower)}")
    print(f"  fastest ({best}) >= 2.0x official on both: {'PASS' if speedup[best] >= 2.0 else 'FAIL'} "
          f"({speedup[best]:.2f}x; stretch 2.5x: {'PASS' if speedup[best] >= 2.5 else 'FAIL'})")
    print(f"  peak RSS <= 1.3x official: {verdict(heavy)}")
    print(f"  max relative error <= {PARITY_MAX_RELATIVE_ERROR:g} (parity tests): {verdict(off)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--config", choices=("full", "reduced"), default="full",
                        help="full: the lin_cae architecture; reduced: a small test architecture")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="keras-lincae dtype (bfloat16: policy mixed_bfloat16); the official model stays float32")
    parser.add_argument("--official-dtype", choices=("float32", "bfloat16"), default="float32",
                        help="official model dtype (bfloat16: torch.autocast); its outputs are the reference")
    parser.add_argument("--official-huge-pages", action="store_true",
                        help="run the official model with the huge-page malloc tunable too (ours always "
                             "run as `lincae` does, keras_lincae.entry.command_environment)")
    parser.add_argument("--batch", type=int, default=1, help="clips per call (different synthetic music)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs after the warm-up (median)")
    parser.add_argument("--json", help="also write every subprocess's results here")
    parser.add_argument("--profile", default="",
                        help="comma-separated backends (or 'official') whose decode is profiled once after timing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args)

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
    print(f"keras-lincae inference benchmark: config={args.config} seconds={args.seconds:g} batch={args.batch} "
          f"dtype={args.dtype} official dtype={args.official_dtype} runs={args.runs} backends={','.join(backends)}")
    print(f"host: {os.cpu_count()} CPUs, python {sys.version.split()[0]}; GLIBC_TUNABLES ours "
          f"{entry.command_environment(None).get('GLIBC_TUNABLES', 'unset')}, official "
          f"{'the same' if args.official_huge_pages else os.environ.get('GLIBC_TUNABLES', 'unset')}")
    print(f"WARNING: this machine may be shared with other jobs; wall times depend on its load. "
          f"load average (1/5/15 min) at start: {loadavg()}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lincae_bench_") as workdir:
        args.workdir = workdir
        prep = spawn("prepare", args)
        if not prep.get("ok"):
            sys.exit(f"prepare failed: {prep.get('error')}")
        print(f"model: {prep['params_m']:.2f}M parameters, {prep['frames']} latent frames, "
              f"decode noise {tuple(prep['noise_shape'])}")
        official = spawn("official", args)
        if not official.get("ok"):
            sys.exit(f"official model failed: {official.get('error')}")
        results = [("official", official)]
        for backend in backends:
            results.append((backend, spawn(backend, args, backend=backend)))
    print_tables(results, official, args.batch * args.seconds)
    if args.config == "full" and args.dtype == args.official_dtype == "float32":  # what the goals are set for
        check_goals(results, official)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load_end": loadavg(), "results": dict(results)}, f, indent=1)
    print(f"\nofficial torch threads: {official.get('threads')}; "
          f"load average at end: {loadavg()}; total {time.perf_counter() - start:.0f} s")
    for name, r in results:
        if r.get("profile"):
            print(f"\n===== decode profile: {name} =====\n{r['profile']}")


if __name__ == "__main__":
    main()
