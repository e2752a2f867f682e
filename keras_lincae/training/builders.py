"""What a training run is made of: the model, its optimizer, its clip stream."""

import gc

import keras
import numpy as np

from keras_lincae import LinCAE
from keras_lincae.backend_dispatch import fit_input
from keras_lincae.data import audio_batches, audio_dataset, clip_samples_for_frames
from keras_lincae.data.synth import ensure_default_dataset
from keras_lincae.models.lincae import ARCHITECTURE_DEFAULTS
from keras_lincae.training.optimizers import RAdam


def build_model(preset, fields):
    """A freshly initialised `LinCAE` of `preset`'s architecture with config `fields` changed."""
    return LinCAE.from_preset(preset, load_weights=False, **fields)


def init_from_preset(model, preset):
    """Copy the weights of `preset` (same architecture) into a freshly built `model`.

    The step counter stays at 0 (every schedule starts afresh) and the EMA shadows start from
    the copied weights. Raises ValueError naming the first mismatching architecture field.
    """
    source = LinCAE.from_preset(preset)
    for key in ARCHITECTURE_DEFAULTS:
        mine, theirs = (_plain(m.get_config().get(key)) for m in (model, source))
        if mine != theirs:
            raise ValueError(f"init_weights {preset!r}: its {key} is {theirs!r}, the run's model has {mine!r}")
    for part in ("frontend", "encoder", "decoder"):
        for dst, src in zip(getattr(model, part).weights, getattr(source, part).weights, strict=True):
            dst.assign(keras.ops.convert_to_numpy(src.value))
    sources = model.encoder.trainable_weights + model.decoder.trainable_weights
    for shadow, w in zip(model.ema_weights, sources):
        shadow.assign(np.array(keras.ops.convert_to_numpy(w.value)))


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


class MicroStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Evaluates a schedule at `micro_step // accum` (Keras evaluates schedules at micro-steps
    when `gradient_accumulation_steps` is set)."""

    def __init__(self, schedule, accum):
        self.schedule, self.accum = schedule, int(accum)

    def __call__(self, step):
        return self.schedule(keras.ops.floor_divide(step, self.accum))

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "accum": self.accum}


def build_optimizer(schedule, beta_1, beta_2, grad_accum=1):
    """RAdam (torch-aligned) on `schedule` (a function of the update), accumulating `grad_accum`
    micro-batches per update."""
    kwargs = {}
    if grad_accum > 1:
        schedule = MicroStepSchedule(schedule, grad_accum)
        kwargs["gradient_accumulation_steps"] = grad_accum
    return RAdam(learning_rate=schedule, beta_1=beta_1, beta_2=beta_2, **kwargs)


def data_sources(data):
    """The folders of `data` (a folder, a list, or None: the embedded synthetic train split)."""
    if data:
        return [data] if isinstance(data, str) else list(data)
    return [str(ensure_default_dataset() / "train")]


def resume_plan(data_resume, skip_limit, skip_batches, seed):
    """How a stream continues after `skip_batches` consumed batches: `(mode, seed, skip)`.

    `data_resume` "skip" replays the stream past them (exact), "reseed" starts a new stream with
    a seed derived from `(seed, skip_batches)` (fast), "auto" skips up to `skip_limit` batches.
    """
    mode = data_resume
    if mode == "auto":
        mode = "skip" if skip_batches <= skip_limit else "reseed"
    if mode == "reseed" and skip_batches:
        seed = int(np.random.SeedSequence([seed, skip_batches]).generate_state(1)[0] & 0x7FFFFFFF)
    return mode, seed, (skip_batches if mode == "skip" else 0)


def build_dataset(sources, clip_frames, model, batch, seed, pipeline, skip=0, **stream_options):
    """The clip stream `(batch, clip_samples)` float32 for `model.fit` after `skip` batches.

    `pipeline` "tf.data" gives a `tf.data.Dataset`; "python" a generator of numpy batches.
    `stream_options`: the other keyword arguments of `keras_lincae.data.audio_dataset`.
    """
    clip_samples = clip_samples_for_frames(clip_frames, hop=model.hop_size, n_fft_factor=model.n_fft_factor)
    if pipeline == "python":
        batches = audio_batches(sources, clip_samples, batch, seed=seed, skip=skip, **stream_options)
        return fit_input(batches, batch, clip_samples)
    ds = audio_dataset(sources, clip_samples, batch, seed=seed, **stream_options)
    return ds.skip(skip) if skip else ds


def first_batch(dataset):
    """The first batch of `build_dataset`'s stream as a numpy array (a generator is closed after it,
    which stops its reading threads and frees its in-memory audio)."""
    stream = iter(dataset)
    batch = next(stream)
    if hasattr(stream, "close"):
        stream.close()
    del stream
    finalize_input_iterators()  # while `dataset` still holds the functions its threads call
    return np.asarray(batch[0] if isinstance(batch, tuple) else batch)


def finalize_input_iterators():
    """Free dropped input-pipeline iterators now, while the caller still holds their dataset.

    A `tf.data` iterator's reading threads call Python functions (`tf.py_function`) that
    TensorFlow registers by weak reference. Left to a later cyclic-GC pass that frees the
    dataset in the same sweep, a thread still in flight can look up a function already cleared
    (a CI run crashed with SIGSEGV in that sweep). Collecting here joins the threads first.
    """
    gc.collect()
