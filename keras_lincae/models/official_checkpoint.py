"""Official `linear-cae` releases (PyTorch): read one, map its config and weights onto a model.

Leaf module (no model import): `convert_release` builds the model class it is given, so
`keras_lincae.convert` and `keras_lincae.preset_io` both use it without an import cycle.
"""

import os

import numpy as np
import yaml

from keras_lincae.presets import official_scale_factor

RELEASE_FILES = {
    "weights": "autoencoder_inference_model_last.pth",
    "frontend": "frontend_kwargs_last.yaml",
    "generator": "generator_kwargs_last.yaml",
    "diffusion": "diffusion_kwargs_last.yaml",
}
# Official arguments that do not change the network (or are implied by the frontend).
_IGNORED_GENERATOR_ARGS = {"hop", "pre_normalize_downsampling_encoder_unused", "_target_", "bottleneck_layers"}
_IGNORED_FRONTEND_ARGS = {"hop_size_unused", "_target_"}
_FRONTEND_NAMES = ("hop_size", "n_fft_factor", "alpha_rescale", "beta_rescale", "sample_rate")


def _conv(weight):
    """torch ConvNd weight -> Keras kernel (time axis first, channels last)."""
    if weight.ndim == 4:  # (out, in, freq, time) -> (time, freq, in, out)
        return weight.transpose(3, 2, 1, 0)
    return weight.transpose(2, 1, 0)  # (out, in, time) -> (time, in, out)


def _dense(weight):
    """torch Linear or 1x1 conv weight -> Dense kernel `(in, out)`."""
    return weight.reshape(weight.shape[0], weight.shape[1]).T


class _Mapping:
    """Collects `torch name -> (keras variable, transform)` pairs."""

    def __init__(self):
        self.entries = {}

    def add(self, name, variable, transform=None):
        self.entries[name] = (variable, transform or (lambda w: w))

    def dense(self, prefix, layer, transform=_dense):
        self.add(f"{prefix}.weight", layer.kernel, transform)
        self.add(f"{prefix}.bias", layer.bias)

    def conv(self, prefix, layer):
        self.add(f"{prefix}.weight", layer.conv.kernel, _conv)
        self.add(f"{prefix}.bias", layer.conv.bias)

    def norm(self, prefix, layer):
        self.add(f"{prefix}.weight", layer.gamma)
        self.add(f"{prefix}.bias", layer.beta)

    def resample(self, prefix, layer):
        if layer.norm is not None:
            self.norm(f"{prefix}.norm", layer.norm)
        self.conv(f"{prefix}.c", layer.conv)

    def res_block(self, prefix, block):
        self.conv(f"{prefix}.conv1", block.conv1)
        self.conv(f"{prefix}.conv2", block.conv2)
        if block.res_conv is not None:
            self.dense(f"{prefix}.res_conv", block.res_conv)
        if block.normalize:
            self.norm(f"{prefix}.norm1", block.norm1)
            self.norm(f"{prefix}.norm2", block.norm2)
        if block.proj_emb is not None:
            self.dense(f"{prefix}.proj_emb", block.proj_emb)
        if block.att is not None:
            att = f"{prefix}.att"
            self.add(f"{att}.mha.in_proj_weight", block.att.qkv.kernel, lambda w: w.T)
            self.add(f"{att}.mha.in_proj_bias", block.att.qkv.bias)
            self.dense(f"{att}.mha.out_proj", block.att.out)
            if block.att.norm is not None:
                self.norm(f"{att}.norm", block.att.norm)


def official_weight_mapping(model):
    """`{official state-dict name: (keras variable, transform)}` for a built `LinCAE`."""
    m = _Mapping()
    enc, dec = model.encoder, model.decoder
    p = "generator.encoder"
    m.add(f"{p}.gain.scale", enc.freq_gain, lambda w: w.reshape(-1, 1))
    m.conv(f"{p}.conv_inp", enc.conv_inp)
    k = 0
    for i, blocks in enumerate(enc.levels):
        for block in blocks:
            m.res_block(f"{p}.down_layers.{k}", block)
            k += 1
        if i < len(enc.downsamples):
            m.resample(f"{p}.down_layers.{k}", enc.downsamples[i])
            k += 1
    if enc.prenorm is not None:
        m.norm(f"{p}.prenorm_1d_to_2d", enc.prenorm)
    channels, freq = enc.top_channels, enc.freq_dim

    def flatten_order(w):  # official flattens (channel, freq) as c * F + f; we use f * C + c
        w = w.reshape(w.shape[0], channels, freq).transpose(0, 2, 1)
        return w.reshape(w.shape[0], -1).T

    m.dense(f"{p}.bottleneck_layers.0", enc.bottleneck_inp, flatten_order)
    for j, block in enumerate(enc.bottleneck_blocks):
        m.res_block(f"{p}.bottleneck_layers.{j + 1}", block)
    m.norm(f"{p}.norm_out", enc.norm_out)
    m.dense(f"{p}.conv_out", enc.conv_out)

    p = "generator.decoder"
    pyr = dec.pyramid
    m.dense(f"{p}.conv_inp", pyr.conv_inp)
    for j, block in enumerate(pyr.bottleneck_blocks):
        m.res_block(f"{p}.bottleneck_layers.{j}", block)
    m.dense(f"{p}.conv_out_bottleneck", pyr.conv_out)
    k = 0
    for i, blocks in enumerate(pyr.levels):
        for block in blocks:
            m.res_block(f"{p}.up_layers.{k}", block)
            k += 1
        if i < len(pyr.upsamples):
            m.resample(f"{p}.up_layers.{k}", pyr.upsamples[i])
            k += 1

    p = "generator"
    if dec.use_fourier:
        m.add(f"{p}.emb.W", dec.embedding.fourier_weights)
    for name, mlp in (("emb_proj", dec.emb_proj), ("scale_inp", dec.scale_inp), ("scale_out", dec.scale_out)):
        for j, layer in enumerate(mlp):
            m.dense(f"{p}.{name}.{2 * j}", layer)
    m.conv(f"{p}.conv_inp", dec.conv_inp)
    for direction, levels, resamplers in (
        ("down", dec.down_levels, dec.downsamples),
        ("up", dec.up_levels, dec.upsamples),
    ):
        k = 0
        for i, pairs in enumerate(levels):
            for mix, block in pairs:
                m.dense(f"{p}.{direction}_layers.{k}", mix)
                m.res_block(f"{p}.{direction}_layers.{k + 1}", block)
                k += 2
            if i < len(resamplers):
                m.resample(f"{p}.{direction}_layers.{k}", resamplers[i])
                k += 1
    m.dense(f"{p}.conv_decoded", dec.conv_decoded)
    m.norm(f"{p}.norm_out", dec.norm_out)
    m.conv(f"{p}.conv_out", dec.conv_out)
    return m.entries


def load_official_state_dict(model, state_dict):
    """Assign an official `Autoencoder` state dict (name -> numpy array) to a built `LinCAE`.

    Raises ValueError listing missing or unexpected names and every shape mismatch.
    """
    mapping = official_weight_mapping(model)
    names = {k for k in state_dict if k.startswith("generator.")}
    missing = sorted(set(mapping) - names)
    unexpected = sorted(names - set(mapping))
    if missing or unexpected:
        raise ValueError(
            "Checkpoint does not match the configured architecture: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    errors = []
    values = []
    for name, (variable, transform) in mapping.items():
        value = np.asarray(transform(np.asarray(state_dict[name], dtype=np.float32)))
        if tuple(value.shape) != tuple(variable.shape):
            errors.append(f"{name}: checkpoint {tuple(np.shape(state_dict[name]))} -> {value.shape}, model {tuple(variable.shape)}")
        values.append((variable, value))
    if errors:
        raise ValueError("Checkpoint shapes do not match the configuration:\n  " + "\n  ".join(errors))
    for variable, value in values:
        variable.assign(value)


def config_from_official_kwargs(frontend, generator, diffusion, scale_factor=1.0):
    """Map the official `*_kwargs_last.yaml` dicts to `LinCAE` config fields.

    Generator arguments keep their names (an unknown one makes `LinCAE` raise naming it).
    """
    config = {}
    for key, value in (frontend or {}).items():
        if key in _FRONTEND_NAMES:
            config[key] = value if key != "sample_rate" or value is not None else 44100
        elif key not in _IGNORED_FRONTEND_ARGS:
            raise ValueError(f"Unsupported official frontend argument {key!r}")
    generator = generator or {}
    if generator.get("bottleneck_layers") is not None:
        raise ValueError("Official DynamicBottleneck (bottleneck_layers) is not supported")
    for key, value in generator.items():
        if key == "activation_bottleneck":
            config[key] = "tanh" if value is None or "tanh" in str(value).lower() else "linear"
        elif key not in _IGNORED_GENERATOR_ARGS:
            config[key] = value
    hop = generator.get("hop")
    if hop is not None and "hop_size" in config and int(hop) != int(config["hop_size"]):
        raise ValueError(f"generator hop ({hop}) differs from the frontend hop_size")
    for key in ("sigma_min", "sigma_max", "sigma_data", "rho"):
        if diffusion and key in diffusion:
            config[key] = diffusion[key]
    config["scale_factor"] = float(scale_factor)
    return config


def read_official_release(src_dir, scale_factor=None):
    """Read a release folder -> `(config, state)`: `LinCAE` config fields and the state dict
    (name -> numpy float32). `scale_factor` None: the official value of a known release."""
    missing = [f for f in RELEASE_FILES.values() if not os.path.isfile(os.path.join(src_dir, f))]
    if missing:
        raise FileNotFoundError(f"{src_dir} is not an official release folder: missing {', '.join(missing)}")
    try:
        import torch
    except ImportError as error:
        raise ImportError("Converting official checkpoints needs PyTorch: pip install torch") from error
    kwargs = {}
    for key in ("frontend", "generator", "diffusion"):
        with open(os.path.join(src_dir, RELEASE_FILES[key])) as f:
            kwargs[key] = yaml.safe_load(f) or {}
    path = os.path.join(src_dir, RELEASE_FILES["weights"])
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise ValueError(f"Cannot read official checkpoint {path}: {error}") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v.detach().float().numpy() for k, v in state.items()}
    if scale_factor is None:
        scale_factor = official_scale_factor(src_dir)
    config = config_from_official_kwargs(kwargs["frontend"], kwargs["generator"], kwargs["diffusion"], scale_factor)
    return config, state


def convert_release(model_class, src_dir, preset_dir=None, scale_factor=None, name=None):
    """Build `model_class` (a `LinCAE`) from an official release folder; optionally save it as
    a preset. Arguments as `keras_lincae.convert_official_checkpoint`. Returns the model."""
    config, state = read_official_release(src_dir, scale_factor)
    model = model_class(**config)
    model.build()
    load_official_state_dict(model, state)
    if preset_dir is not None:
        model.save_to_preset(
            preset_dir,
            overwrite=True,
            provenance=f"converted from official linear-cae checkpoint {os.path.abspath(src_dir)}",
            training_mode=name,
        )
    return model
