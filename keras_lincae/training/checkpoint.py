"""Atomic training checkpoints: model variables (EMA shadows, step counter, seed states),
optimizer variables and run metadata (step, batches consumed) in one `.npz` file.

A checkpoint is written to `ckpt-<step>.npz.tmp-<pid>` (flushed and fsynced), then renamed to
`ckpt-<step>.npz` with `os.replace`: a reader sees a complete file or none. A process killed
mid-write leaves only a temporary file, which is ignored and removed at the next start.

Test hooks (environment variables, seconds): `KERAS_LINCAE_CKPT_PAUSE_BEFORE_RENAME` sleeps
between writing the temporary file and the rename; `KERAS_LINCAE_CKPT_PAUSE_AFTER_SAVE` sleeps
after a checkpoint is in place. `KERAS_LINCAE_CKPT_PAUSE_FROM_STEP` (default 0) limits both to
checkpoints at or after that step.
"""

import glob
import json
import os
import re
import time

import keras
import numpy as np

_NAME = re.compile(r"^ckpt-(\d+)\.npz$")
FORMAT = "keras_lincae.training_checkpoint/1"


def _pause(var, step):
    seconds = float(os.environ.get(var, "0") or 0)
    if seconds > 0 and step >= int(os.environ.get("KERAS_LINCAE_CKPT_PAUSE_FROM_STEP", "0")):
        time.sleep(seconds)


def _values(variables):
    return [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in variables]


def model_state_variables(model):
    """Variables a checkpoint holds for the model: weights, EMA shadows, step counter, seeds."""
    return list(model.variables)


class Checkpointer:
    """Writes, lists, loads and prunes checkpoints in `directory`."""

    def __init__(self, directory, keep=3):
        self.directory = os.path.abspath(directory)
        self.keep = int(keep)

    def clean_temporaries(self):
        """Remove temporary files left by killed writers."""
        for path in glob.glob(os.path.join(self.directory, "ckpt-*.npz.tmp-*")):
            try:
                os.remove(path)
            except OSError:
                pass

    def list(self):
        """`[(step, path)]` of complete checkpoints, oldest first."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            m = _NAME.match(name)
            if m:
                found.append((int(m.group(1)), os.path.join(self.directory, name)))
        return sorted(found)

    def latest(self):
        found = self.list()
        return found[-1] if found else None

    def save(self, model, step, meta):
        """Write the checkpoint of `step` atomically; return its path."""
        os.makedirs(self.directory, exist_ok=True)
        model_vars = model_state_variables(model)
        opt_vars = list(model.optimizer.variables)
        arrays = {}
        for i, value in enumerate(_values(model_vars)):
            arrays[f"model/{i:05d}"] = value
        for i, value in enumerate(_values(opt_vars)):
            arrays[f"optimizer/{i:05d}"] = value
        meta = dict(meta, format=FORMAT, step=int(step),
                    model_paths=[v.path for v in model_vars], optimizer_paths=[v.path for v in opt_vars])
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        final = os.path.join(self.directory, f"ckpt-{int(step):08d}.npz")
        tmp = f"{final}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        _pause("KERAS_LINCAE_CKPT_PAUSE_BEFORE_RENAME", step)
        os.replace(tmp, final)
        try:  # make the rename durable
            fd = os.open(self.directory, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass
        self.prune()
        _pause("KERAS_LINCAE_CKPT_PAUSE_AFTER_SAVE", step)
        return final

    def prune(self):
        for _, path in self.list()[: -self.keep] if self.keep > 0 else []:
            try:
                os.remove(path)
            except OSError:
                pass

    @staticmethod
    def read_meta(path):
        with np.load(path) as data:
            return json.loads(bytes(data["meta"]).decode())

    def restore(self, model, path):
        """Assign the checkpoint's values to `model` and its (built) optimizer; return its meta."""
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path} is not a keras_lincae training checkpoint")
            for kind, variables in (("model", model_state_variables(model)),
                                    ("optimizer", list(model.optimizer.variables))):
                paths = meta[f"{kind}_paths"]
                if len(paths) != len(variables):
                    raise ValueError(
                        f"{path}: {len(paths)} {kind} variables saved, the run has {len(variables)} "
                        "(was the config, dtype policy or --grad-accum changed?)")
                for i, v in enumerate(variables):
                    value = data[f"{kind}/{i:05d}"]
                    if tuple(value.shape) != tuple(v.shape):
                        raise ValueError(f"{path}: {paths[i]} has shape {value.shape}, the run expects {tuple(v.shape)}")
                    v.assign(value)
        return meta
