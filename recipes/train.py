"""Train a Lin-CAE (or the M2L baseline) on any Keras backend, on one device or many.

Usage:
    KERAS_BACKEND=jax python recipes/train.py --config tiny --out runs/tiny          # embedded data
    python recipes/train.py --config lin_cae --data /music /stems --out runs/lincae
    python recipes/train.py --out runs/lincae --resume                               # after a kill
    python recipes/train.py --config tiny --set model.gain_max=2 --set learning_rate=3e-4 --steps 50

Multi-device (see docs/training.md):
    KERAS_BACKEND=jax        python recipes/train.py --distribution data_parallel ...
    KERAS_BACKEND=jax        python recipes/train.py --distribution model_parallel --model-parallel 2 ...
    KERAS_BACKEND=tensorflow python recipes/train.py --distribution mirrored ...     # all GPUs
    KERAS_BACKEND=tensorflow python recipes/train.py --tpu grpc://10.0.0.2:8470 ...
    KERAS_BACKEND=torch torchrun --nproc_per_node 4 recipes/train.py --ddp ...

Configs live in keras_lincae/training/configs/ (base = the official hyper-parameters; lin_cae, lin_cae_2, m2l,
tiny overlays). The logic lives in keras_lincae.training (config, trainer). Errors are one line
`train.py: error: ...` with exit status 2 (`--debug`: with the traceback).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_lincae import entry  # noqa: E402  (imports no Keras)

PROG = "train.py"
DEFAULT_CONFIG = "lin_cae"


def build_parser():
    p = entry.ArgumentParser(prog=PROG, description="Train a Lin-CAE / M2L model with model.fit on any Keras backend.")
    p.add_argument("--config", default=None,
                   help=f"config name in keras_lincae/training/configs (lin_cae, lin_cae_2, m2l, tiny) or a YAML file "
                        f"(default {DEFAULT_CONFIG}; a resumed run keeps its saved config)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, config, final preset)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value; model.X reaches LinCAE config fields); repeatable")
    p.add_argument("--steps", type=int, help="optimizer updates in total")
    p.add_argument("--batch-size", type=int, help="clips per optimizer update, summed over replicas")
    p.add_argument("--data", nargs="+", help="audio folders (default: the embedded synthetic train split)")
    p.add_argument("--data-weights", nargs="+", type=float, help="sampling weight of each --data folder")
    p.add_argument("--dtype-policy", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer update (gradient accumulation)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--export-preset-every", type=int, help="steps between preset exports (EMA weights)")
    p.add_argument("--max-minutes", type=float,
                   help="stop at the first step after this many minutes (checkpointed; continue with --resume)")
    p.add_argument("--seed", type=int)
    p.add_argument("--distribution", choices=["none", "data_parallel", "model_parallel", "mirrored", "tpu", "ddp"])
    p.add_argument("--ddp", action="store_true", help="PyTorch DDP (launch with torchrun); same as --distribution ddp")
    p.add_argument("--tpu", metavar="ADDRESS", help="TPUStrategy on this TPU (grpc://host:8470, a name, or 'local')")
    p.add_argument("--devices", type=int, help="use the first N devices (JAX / MirroredStrategy GPUs)")
    p.add_argument("--cpu-replicas", type=int, help="MirroredStrategy over N logical CPU devices (testing)")
    p.add_argument("--model-parallel", type=int, help="size of the 'model' mesh axis (model_parallel)")
    p.add_argument("--quiet", action="store_true")
    entry.add_flags(p)
    return p


FLAG_KEYS = dict(steps="steps", batch_size="batch_size", data="data", data_weights="data_weights",
                 dtype_policy="dtype_policy", grad_accum="grad_accum", checkpoint_every="checkpoint_every",
                 export_preset_every="export_preset_every", max_minutes="max_minutes", seed="seed", distribution="distribution",
                 tpu="tpu", devices="devices", cpu_replicas="cpu_replicas", model_parallel="model_parallel")


def explicit_overrides(args):
    """`[(keys, value)]` for everything given on the command line."""
    from keras_lincae.training.config import parse_override

    overrides = [parse_override(text) for text in args.set]
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr)
        if value is not None:
            overrides.append(([key], value))
    if args.ddp:
        overrides.append((["distribution"], "ddp"))
    if args.tpu and args.distribution is None:
        overrides.append((["distribution"], "tpu"))
    return overrides


def main(argv=None):
    """Run the recipe; returns the exit status (2 for a refused run or a bad config)."""
    args = build_parser().parse_args(argv)
    return entry.run(lambda: _train(args), PROG)


def _train(args):
    entry.prepare(PROG, args.backend, args.debug, training=True)
    from keras_lincae.training.config import TrainConfig, apply_overrides, load_config, resumed_mapping
    from keras_lincae.training.trainer import train

    if args.resume and args.config is not None:
        raise ValueError(f"--config cannot be changed on --resume: the run continues with its saved "
                         f"{os.path.join(args.out, 'config.yaml')} (change steps and other resumable "
                         "keys with their flags or --set)")
    entry.check_writable_folder(args.out, "--out")
    overrides = explicit_overrides(args)
    if args.resume:
        mapping = resumed_mapping(args.out, overrides)
    else:
        mapping = apply_overrides(load_config(args.config or DEFAULT_CONFIG), overrides)
    if mapping.get("input_pipeline") != "python":
        entry.import_quietly("tensorflow")  # for tf.data, without its import-time log lines
    config = TrainConfig.from_dict(mapping)
    preset = train(config, args.out, resume=args.resume, verbose=not args.quiet)
    if preset and not args.quiet:
        print(f"Final preset: {preset}")
    return 0


if __name__ == "__main__":
    entry.restart_with_malloc_tunables(training=True)
    sys.exit(main())
