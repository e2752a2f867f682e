"""Can the small architecture learn to use its latents? Train a fresh `lin_cae_small` on 4 fixed
0.4 s clips (two held-out numpy-synth songs) and print, every `--every` steps, the relative
denoising error on those clips with the encoder's latents / all-zero latents at several noise
levels (sigma = 80 is the 1-step decode).

    KERAS_BACKEND=jax python docs/evaluation/conditioning_probe.py --objective regression
    KERAS_BACKEND=jax python docs/evaluation/conditioning_probe.py --objective consistency

`consistency`: `LinCAE.fit` with the Lin-CAE objective (`compute_loss`), step size fixed at 1.0
(the teacher is always at sigma_min: plain denoising), official log-normal noise sampling.
`regression`: encoder + decoder trained as a plain autoencoder, mean squared error of the
decoder's output at `--sigma` (default 80) against the clean spectrogram.
"""
import argparse
import time

import keras
import numpy as np
from keras import ops

from keras_lincae import LinCAE
from keras_lincae.data import clip_samples_for_frames
from keras_lincae.data.synth import generate_song

SIGMAS = (0.5, 2.0, 10.0, 80.0)


class FixedSigmaAutoencoder(keras.Model):
    """The encoder and decoder of `model` trained as a plain autoencoder at one noise level."""

    def __init__(self, model, sigma, **kwargs):
        super().__init__(**kwargs)
        self.model, self.sigma = model, float(sigma)
        self.seed = keras.random.SeedGenerator(0)

    def call(self, audio):
        return self.model.frontend.to_representation(audio)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        clean = y_pred
        noisy = clean + self.sigma * keras.random.normal(ops.shape(clean), seed=self.seed)
        pyramid = self.model.decoder.latent_pyramid(self.model.encoder(clean))
        denoised = self.model.decoder.denoise(noisy, ops.full((ops.shape(clean)[0],), self.sigma), pyramid)
        return ops.mean(ops.square(denoised - clean))


def denoising_errors(model, clips):
    """`{sigma: (error with true latents, error with zero latents)}`, errors relative to the clean norm."""
    clean = model.frontend.to_representation(ops.convert_to_tensor(clips))
    latents = model.encoder(clean)
    pyramids = model.decoder.latent_pyramid(latents), model.decoder.latent_pyramid(ops.zeros_like(latents))
    noise = ops.convert_to_tensor(np.random.default_rng(0).standard_normal(tuple(clean.shape)).astype("float32"))
    reference = np.linalg.norm(ops.convert_to_numpy(clean))
    errors = {}
    for sigma in SIGMAS:
        sigmas = ops.full((clips.shape[0],), sigma)
        errors[sigma] = tuple(
            np.linalg.norm(ops.convert_to_numpy(model.decoder.denoise(clean + sigma * noise, sigmas, p) - clean)) / reference
            for p in pyramids
        )
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objective", choices=("consistency", "regression"), required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--sigma", type=float, default=80.0, help="noise level of the regression objective")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = LinCAE.from_preset("lin_cae_small", load_weights=False, start_exp=0.0, end_exp=0.0, total_steps=args.steps)
    clip = clip_samples_for_frames(32, hop=model.hop_size, n_fft_factor=model.n_fft_factor)
    songs = [generate_song([0, 1, s], seconds=3.0, renderer="numpy")[0]["mixture"] for s in (1, 2)]
    clips = np.stack([song[k * clip:(k + 1) * clip] for song in songs for k in (0, 1)]).astype("float32")
    trained = model if args.objective == "consistency" else FixedSigmaAutoencoder(model, args.sigma)
    trained.compile(optimizer=keras.optimizers.Adam(args.learning_rate))

    print(f"objective {args.objective}: relative denoising error, true latents / zero latents")
    print("| step | s | " + " | ".join(f"σ={s}" for s in SIGMAS) + " |")
    print("|---:|---:|" + "---:|" * len(SIGMAS))
    start, done = time.time(), 0
    while True:
        cells = [f"{e:.3f} / {e0:.3f}" for e, e0 in denoising_errors(model, clips).values()]
        print(f"| {done} | {time.time() - start:.0f} | " + " | ".join(cells) + " |", flush=True)
        if done >= args.steps:
            break
        trained.fit(clips, batch_size=len(clips), epochs=args.every, verbose=0, shuffle=False)
        done += args.every


if __name__ == "__main__":
    main()
