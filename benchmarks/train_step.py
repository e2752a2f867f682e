"""Training-step throughput: keras-lincae on jax / tensorflow / torch vs the official trainer's step.

Reduced config (both sides): base 16 channels, bottleneck base 128, latent 32, one residual
layer per level, hop 256, batch 4 clips of 64 spectrogram frames (17,152 samples), Lin-CAE mode
(mixtures + additivity + gains), RAdam on the warm-up/cosine schedule, EMA every 10 steps.

The official side rebuilds `CAETrainer.train_it` + `training_step` (github
bernardo-torres/linear-autoencoders, src/linear_cae/train.py; the PyPI `linear_cae` 0.1.4 ships
the components but not train.py) from the installed `linear_cae.components` UNet, Diffusion,
ScaledComplexSTFT and ExponentialMovingAverage: mixtures appended, encoder on the
representation, mixture latents replaced by the combination of the sources' latents, gains on
both branches' audio and latents (teacher_student), shared noise, stop-gradient target,
pseudo-Huber loss weighted by 1 / (sigma - sigma_step), torch RAdam, EMA update every 10 steps,
learning rate set each step. It runs eagerly (as the official `compile_model: false`; pass
`--official-compile` for torch.compile of the step), on the GPU when torch sees one.

Each side runs in its own subprocess, one at a time: a few warm-up steps (compilation), then
`--repeats` timed blocks of `--steps` steps. `--rounds` repeats that for every side in fresh
processes, the order rotating from round to round, so that the VM drifting over the minutes of a
run, or a process landing on slower memory, shows up as a spread. s/step is each side's median
block over all rounds; "vs official" is, per round, official median block / own median block,
quoted as the median over rounds and its range.

    python benchmarks/train_step.py                 # all backends + official
    python benchmarks/train_step.py --only jax official --steps 10
    python benchmarks/train_step.py --dtype bfloat16  # ours under mixed_bfloat16, official float32
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from keras_lincae import entry  # noqa: E402  (imports no framework)
ARCH = dict(
    base_channels=16, bottleneck_base_channels=128, bottleneck_channels=32,
    layers_list=[1, 1, 1, 1, 1], layers_list_encoder=[1, 1, 1, 1, 1], hop_size=256,
)
BATCH, FRAMES = 4, 64
CLIP = (FRAMES - 1) * ARCH["hop_size"] + 4 * ARCH["hop_size"]
TOTAL_STEPS = 800_000
POLICIES = {"float32": None, "bfloat16": "mixed_bfloat16"}  # --dtype -> ours' dtype policy


def audio_batches(n, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(CLIP) / 44100.0
    out = np.zeros((n, CLIP), "float32")
    for i in range(n):
        for _ in range(3):
            out[i] += 0.1 * np.sin(2 * np.pi * rng.uniform(80, 2000) * t + rng.uniform(0, 6))
        out[i] += 0.01 * rng.standard_normal(CLIP)
    return out


# --------------------------------------------------------------------------------- keras side
def keras_worker(warmup, steps, repeats, jit_compile="auto", dtype="float32"):
    import keras
    import numpy as np

    from keras_lincae import LinCAE
    from keras_lincae.training.optimizers import RAdam
    from keras_lincae.training.schedules import WarmupDecay

    keras.utils.set_random_seed(0)
    model = LinCAE.from_preset("lin_cae", load_weights=False, total_steps=TOTAL_STEPS,
                               ema_momentum=0.9999, ema_every=10, dtype=POLICIES[dtype], **ARCH)
    model.compile(optimizer=RAdam(WarmupDecay(1e-4, 1e-6, 10_000, TOTAL_STEPS)), jit_compile=jit_compile)
    x = audio_batches(BATCH * steps)
    t0 = time.perf_counter()
    model.fit(x[: BATCH * warmup], batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.fit(x, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        float(keras.ops.convert_to_numpy(model.training_step))  # wait for the last step
        times.append((time.perf_counter() - t0) / steps)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)  # EMA shadows excluded
    return dict(params=trainable, warmup_s=first, step_s=times)


# ------------------------------------------------------------------------------ official side
def official_worker(warmup, steps, repeats, compile_step=False, dtype="float32"):
    import numpy as np
    import torch
    from linear_cae.components.diffusion import Diffusion
    from linear_cae.components.ema import ExponentialMovingAverage
    from linear_cae.components.frontends import ScaledComplexSTFT
    from linear_cae.components.generator import UNet

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.set_default_device(device)  # the step's torch.rand / torch.ones calls
    hop = ARCH["hop_size"]
    frontend = ScaledComplexSTFT(hop_size=hop, n_fft_factor=4, alpha_rescale=0.65, beta_rescale=0.34, sample_rate=44100)
    generator = UNet(
        base_channels=ARCH["base_channels"], layers_list=ARCH["layers_list"], multipliers_list=[1, 2, 4, 4, 4],
        attention_list=[0, 0, 1, 1, 1], freq_downsample_list=[1, 0, 0, 0], layers_list_encoder=ARCH["layers_list_encoder"],
        attention_list_encoder=[0, 0, 1, 1, 1], bottleneck_base_channels=ARCH["bottleneck_base_channels"],
        num_bottleneck_layers=4, frequency_scaling=True, heads=4, cond_channels=256, use_fourier=False,
        fourier_scale=0.2, normalization=True, dropout_rate=0.0, min_res_dropout=16,
        bottleneck_channels=ARCH["bottleneck_channels"], pre_normalize_2d_to_1d=True,
        pre_normalize_downsampling_encoder=True, init_as_zero=True, hop=hop, sigma_max=80.0, sigma_min=0.002,
        sigma_data=0.5, data_channels=2)
    diffusion = Diffusion(schedule="exponential", start_exp=1.0, end_exp=2.0, base_step=0.1, sigma_min=0.002,
                          sigma_max=80.0, rho=7.0, use_lognormal=True, p_mean=-1.1, p_std=2.0, sigma_data=0.5,
                          total_iters=TOTAL_STEPS)
    optimizer = torch.optim.RAdam(generator.parameters(), lr=1e-4)
    ema = ExponentialMovingAverage(generator.parameters(), decay=0.9999, use_num_updates=True)

    def huber(x, y, w, c=0.00054):
        diff = torch.flatten((x - y) ** 2, start_dim=1)
        c = c * torch.sqrt(torch.ones((1,), device=x.device) * diff.shape[-1])
        diff = torch.sqrt(torch.sum(diff, -1) + c**2) - c
        return (torch.nan_to_num(diff) * w.squeeze()).mean()

    def combine(batch, weights):
        w = weights.view(-1, *([1] * (batch.ndim - 1)))
        return batch * w + torch.roll(batch, shifts=1, dims=0) * (1 - w)

    def train_it(wv, it, gain_min, gain_max, prob=0.8):
        n = wv.shape[0]
        lc_weight = torch.rand((n,)) * 0.5 + 0.5
        wv = torch.cat([wv, combine(wv, lc_weight)], dim=0)
        n = wv.shape[0]
        apply = torch.rand((n,)) < prob
        gains = torch.rand((n,)) * (gain_max - gain_min) + gain_min
        gains = torch.where(gains < 0.05, 0.0, gains)
        gain = torch.where(apply, gains, torch.ones((n,)))
        data_rep = frontend.to_representation(wv)
        cap = 1.0 / (torch.amax(torch.abs(wv), dim=1) + 1e-7)
        gain = torch.copysign(torch.min(torch.abs(gain), cap), gain)
        scaled_rep = frontend.to_representation(wv * gain[:, None])
        step = diffusion.get_step_schedule(min(it, TOTAL_STEPS))
        w = diffusion.get_sampling_weights(10000, device=data_rep.device)
        inds = torch.multinomial(w, n, replacement=True).float()
        inds = (inds + torch.rand_like(inds)) / float(10000 - 1)
        sigmas = diffusion.get_sigma_continuous(inds)
        sigmas_step = diffusion.get_sigma_continuous(diffusion.get_step_continuous(inds, step))
        noises = torch.randn_like(data_rep)
        noisy_student = diffusion.add_noise(scaled_rep, noises, sigmas)
        noisy_teacher = diffusion.add_noise(scaled_rep, noises, sigmas_step)
        latents = generator.encoder(data_rep)
        half = latents.shape[0] // 2
        new_half = combine(latents[:half], lc_weight.to(latents.dtype))
        mask = (torch.rand((half,)) < 1.0).float().view(-1, *([1] * (new_half.ndim - 1)))
        latents = torch.cat([latents[:half], mask * new_half + (1 - mask) * latents[half:]], dim=0)
        latents = latents * gain.view(-1, *((1,) * (latents.ndim - 1)))
        pyramid = generator.decoder(latents)
        target = generator.forward_generator(latents, noisy_teacher, sigmas_step, pyramid).detach()
        prediction = generator.forward_generator(latents, noisy_student, sigmas, pyramid)
        return huber(target, prediction, diffusion.get_loss_weight(sigmas, sigmas_step))

    if compile_step:
        train_it = torch.compile(train_it)

    def training_step(wv, it):
        lr = 1e-4 * it / 10_000 if it < 10_000 else 1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + np.cos(np.pi * (it - 10_000) / (TOTAL_STEPS - 10_000)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = train_it(wv, it, 0.0, 3.0)  # gain range held at [0, 3] for the first 20 %
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if it % 10 == 0:
            ema.update()
        return loss

    x = torch.from_numpy(audio_batches(BATCH * steps)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    it = 0
    t0 = time.perf_counter()
    for i in range(warmup):
        training_step(x[(i % steps) * BATCH:(i % steps + 1) * BATCH], it)
        it += 1
    sync()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            training_step(x[i * BATCH:(i + 1) * BATCH], it)
            it += 1
        sync()
        times.append((time.perf_counter() - t0) / steps)
    return dict(params=int(sum(p.numel() for p in generator.parameters())), warmup_s=first, step_s=times)


# ---------------------------------------------------------------------------------- driver
def print_goals(speedups):
    """PASS/FAIL for the training goals on `{backend: median official / ours}`: every backend at
    least as fast as the official step, the fastest at least 1.5x."""
    if not speedups:
        return
    slower = [f"{name} {x:.2f}x" for name, x in speedups.items() if x < 1.0]
    best = max(speedups, key=speedups.get)
    print("\ngoals (median over rounds):")
    print(f"  every backend at least as fast as official: {'PASS' if not slower else 'FAIL (' + ', '.join(slower) + ')'}")
    print(f"  fastest ({best}) >= 1.5x official: {'PASS' if speedups[best] >= 1.5 else 'FAIL'} ({speedups[best]:.2f}x)")


def run_worker(name, args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if name != "official":
        env["KERAS_BACKEND"] = name
    if name != "official" or args.official_tunables:  # ours as the training recipes run
        env = entry.command_environment(None if name == "official" else name, env, training=True)
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--repeats", str(args.repeats)]
    if args.official_compile:
        command.append("--official-compile")
    command += ["--jit-compile", args.jit_compile, "--dtype", args.dtype, "--official-dtype", args.official_dtype]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        return dict(error=(result.stderr or result.stdout).strip().splitlines()[-1:] or ["failed"])
    return json.loads(lines[-1][len("RESULT "):])


def malloc_note(official_tunables):
    """Which sides ran with the training malloc tunables (`keras_lincae.entry.malloc_environment`)."""
    ours = entry.command_environment(None, training=True).get("GLIBC_TUNABLES", "unset")
    official = "the same" if official_tunables else os.environ.get("GLIBC_TUNABLES", "unset")
    return f"GLIBC_TUNABLES ours {ours}, official {official}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=["official", "jax", "tensorflow", "torch"])
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    p.add_argument("--steps", type=int, default=5, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks per process")
    p.add_argument("--rounds", type=int, default=2, help="fresh processes per side, one side at a time")
    p.add_argument("--official-compile", action="store_true", help="torch.compile the official step")
    p.add_argument("--jit-compile", default="auto", choices=("auto", "true", "false"),
                   help="ours: model.compile(jit_compile=...) (tensorflow: XLA or TF's own kernels)")
    p.add_argument("--dtype", default="float32", choices=tuple(POLICIES),
                   help="ours: bfloat16 trains under the mixed_bfloat16 policy (float32 variables)")
    p.add_argument("--official-dtype", default="float32", choices=tuple(POLICIES),
                   help="official: bfloat16 runs its forward pass under torch.autocast")
    p.add_argument("--official-tunables", action="store_true",
                   help="run the official step with our training malloc tunables too (ours always run "
                        "as the training recipes do, keras_lincae.entry.command_environment)")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        if args.worker == "official":
            result = official_worker(args.warmup, args.steps, args.repeats, args.official_compile, args.official_dtype)
        else:
            jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
            result = keras_worker(args.warmup, args.steps, args.repeats, jit, args.dtype)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    rounds = []  # per round: {name: worker result}
    for r in range(args.rounds):
        order = args.only[r % len(args.only):] + args.only[: r % len(args.only)]
        rounds.append({})
        for name in order:
            print(f"round {r + 1}/{args.rounds}: running {name} ...", file=sys.stderr, flush=True)
            rounds[-1][name] = run_worker(name, args)
    results = {}
    for name in args.only:
        runs = [by_name[name] for by_name in rounds]
        failed = [run for run in runs if "error" in run]
        results[name] = failed[0] if failed else dict(
            params=runs[0]["params"], warmup_s=[run["warmup_s"] for run in runs],
            step_s=[t for run in runs for t in run["step_s"]],
            round_step_s=[statistics.median(run["step_s"]) for run in runs])
    official = results.get("official", {}).get("round_step_s")
    print(f"\nTraining step, reduced config (batch {BATCH} x {FRAMES} frames, hop {ARCH['hop_size']}), "
          f"{args.rounds} round(s) of one fresh process per side, each {args.repeats} blocks of {args.steps} "
          f"steps after {args.warmup} warm-up steps; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs; {malloc_note(args.official_tunables)}\n")
    print("| implementation | trainable params | warm-up (s) | s/step (median block) | per-round s/step "
          "| vs official (median over rounds) | per-round range |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        label = "official linear_cae (torch eager)" if name == "official" else f"keras-lincae ({name})"
        if name == "official" and args.official_compile:
            label = "official linear_cae (torch.compile)"
        dtype = args.official_dtype if name == "official" else args.dtype
        label += f", {dtype}" if dtype != "float32" else ""
        if "error" in r:
            print(f"| {label} | - | - | - | - | failed: {' '.join(r['error'])[:120]} | - |")
            continue
        ratios = [o / t for o, t in zip(official, r["round_step_s"])] if official else []
        r["vs_official"] = ratios
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else "-"
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}x" if ratios else "-"
        per_round = " / ".join(f"{t:.3f}" for t in r["round_step_s"])
        print(f"| {label} | {r['params']:,} | {statistics.median(r['warmup_s']):.1f} | "
              f"{statistics.median(r['step_s']):.3f} | {per_round} | {ratio} | {spread} |")
    if args.dtype == args.official_dtype == "float32":  # the goals are float32 against float32
        print_goals({name: statistics.median(r["vs_official"]) for name, r in results.items()
                     if name != "official" and r.get("vs_official")})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
