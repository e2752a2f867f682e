"""The TF Serving SavedModel: `encode`, `decode`, `autoencode`, `separate`, `serving_default`.

Every signature takes float32 tensors with a dynamic batch and length:

| signature         | inputs                                                     | outputs                           |
|-------------------|------------------------------------------------------------|-----------------------------------|
| `encode`          | `audio (B, N)`                                             | `latents (B, L, C)`               |
| `decode`          | `latents (B, L, C)`, `noise (B, steps*td*L, 2*hop, 2)`     | `audio (B, (td*L-1)*hop + n_fft)` |
| `autoencode`      | `audio (B, N)`, `noise (B, steps*F(N), 2*hop, 2)`          | `audio (B, N)`                    |
| `separate`        | `mixture (B, N)`, `accompaniment (B, N)`, `noise` as above | `target (B, N)`                   |
| `serving_default` | same as `autoencode`                                       | same as `autoencode`              |

`td` is `time_downsampling` (8), `C` the latent channels and `F(N)` the spectrogram
frames of the audio after `LinCAE.autoencode_padding` (`common.noise_frames`). For a
multi-step export the per-step draws are concatenated along axis 1. Inputs are
checked in the graph (rank, sizes, lengths, finite values). Needs the TensorFlow backend.
"""

import keras


def write_saved_model(model, directory, steps=1):
    """Write the SavedModel of `model` (a built `LinCAE`) with `steps`-step decoding to `directory`."""
    import tensorflow as tf

    # No gradient functions: serving never differentiates (and tracing them is slow).
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
    build_export_archive(model, steps=steps).write_out(directory, options=options, verbose=False)


def build_export_archive(model, steps=1):
    """A `keras.export.ExportArchive` tracking `model` with the five serving signatures."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("build_export_archive needs KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    from keras_lincae.export.common import check_steps

    check_steps(steps)
    hop, n_fft, td = model.hop_size, model.frontend.n_fft, model.time_downsampling

    def audio_spec(name):
        return tf.TensorSpec((None, None), tf.float32, name=name)

    latents_spec = tf.TensorSpec((None, None, model.latent_channels), tf.float32, name="latents")
    noise_spec = tf.TensorSpec((None, None, 2 * hop, model.data_channels), tf.float32, name="noise")

    # The encoder and the sampler are traced once each, into concrete functions that
    # every signature calls: the SavedModel holds one copy of each graph.
    encoder = tf.function(
        lambda audio: model(audio, training=False), autograph=False
    ).get_concrete_function(audio_spec("audio"))

    def split_and_sample(latents, noise):
        frames = td * tf.shape(latents)[1]
        return model.sample(latents, [noise[:, k * frames : (k + 1) * frames] for k in range(steps)])

    sampler = tf.function(split_and_sample, autograph=False).get_concrete_function(latents_spec, noise_spec)

    def sample(latents, noise):
        """Decode scaled latents with explicit draws, `steps` chunks concatenated on axis 1."""
        noise = _checked(noise, [
            tf.debugging.assert_positive(tf.shape(latents)[1], message="latents have no frames"),
            tf.debugging.assert_equal(
                tf.shape(noise)[0], tf.shape(latents)[0],
                message="noise and latents must have the same batch size",
            ),
            tf.debugging.assert_equal(
                tf.shape(noise)[1], steps * td * tf.shape(latents)[1],
                message=(
                    f"noise axis 1 must be {steps} * {td} * latent_frames "
                    f"(steps * time_downsampling * frames) for this export"
                ),
            ),
            tf.debugging.assert_all_finite(noise, "noise contains NaN or infinite values"),
        ])
        return sampler(latents, noise)

    def pad(audio):
        """`LinCAE.autoencode`'s zero padding; returns the padded audio, `front` and the length."""
        num_samples = tf.shape(audio)[1]
        front, back = model.autoencode_padding(num_samples)
        return tf.pad(audio, [[0, 0], [front, back]]), front, num_samples

    def encode(audio):
        return {"latents": encoder(_checked(audio, _audio_checks(audio, "audio", n_fft)))}

    def decode(latents, noise):
        latents = _checked(latents, [
            tf.debugging.assert_all_finite(latents, "latents contain NaN or infinite values")
        ])
        return {"audio": sample(latents, noise)}

    def autoencode(audio, noise):
        padded, front, num_samples = pad(_checked(audio, _audio_checks(audio, "audio", 1)))
        return {"audio": sample(encoder(padded), noise)[:, front : front + num_samples]}

    def separate(mixture, accompaniment, noise):
        checks = _audio_checks(mixture, "mixture", 1) + _audio_checks(accompaniment, "accompaniment", 1)
        checks.append(tf.debugging.assert_equal(
            tf.shape(mixture), tf.shape(accompaniment),
            message="mixture and accompaniment must have the same shape",
        ))
        mixture, front, num_samples = pad(_checked(mixture, checks))
        accompaniment, _, _ = pad(_checked(accompaniment, checks))
        # Two encoder calls, not one on the stacked batch: the latent difference cancels
        # most of each latent, so it would show the (tiny) differences between batch sizes.
        decoded = sample(encoder(mixture) - encoder(accompaniment), noise)
        return {"target": decoded[:, front : front + num_samples]}

    archive = keras.export.ExportArchive()
    archive.track(model)
    # `write_out` makes the first endpoint `serving_default` too: `autoencode` goes first.
    for fn, signature in (
        (autoencode, [audio_spec("audio"), noise_spec]),
        (encode, [audio_spec("audio")]),
        (decode, [latents_spec, noise_spec]),
        (separate, [audio_spec("mixture"), audio_spec("accompaniment"), noise_spec]),
    ):
        archive.add_endpoint(fn.__name__, _checking_shapes(fn, signature), input_signature=signature)
    return archive


def _checked(x, checks):
    """`x`, available only once every check in `checks` has passed."""
    import tensorflow as tf

    with tf.control_dependencies(checks):
        return tf.identity(x)


def _audio_checks(audio, what, min_samples):
    """Run-time checks of `(batch, samples)` audio: a batch, `min_samples` samples, finite values."""
    import tensorflow as tf

    shape = tf.shape(audio)
    return [
        tf.debugging.assert_positive(shape[0], message=f"{what} has an empty batch"),
        tf.debugging.assert_greater_equal(
            shape[1], min_samples, message=f"{what} is too short: at least {min_samples} samples are needed",
        ),
        tf.debugging.assert_all_finite(audio, f"{what} contains NaN or infinite values"),
    ]


def _checking_shapes(fn, signature):
    """`fn` behind run-time checks of its inputs' shapes against `signature`.

    A served signature does not check the rank of its inputs by itself: a loaded
    SavedModel (and TF Serving) hands a wrongly shaped tensor to the graph, which
    then fails somewhere inside the model. `EnsureShape` fails first, naming the
    input: "Shape of tensor audio [1,1,13230] is not compatible with expected
    shape [?,?]".
    """
    import tensorflow as tf

    def checked(*inputs):
        return fn(*(
            tf.ensure_shape(x, spec.shape, name=f"check_{spec.name}_shape")
            for x, spec in zip(inputs, signature)
        ))

    return checked
