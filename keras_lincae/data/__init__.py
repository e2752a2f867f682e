"""Audio input: reading files, training pipelines, songs and stems, generated datasets.

Modules: ``audio_io`` (decoding, resampling, readers), ``clips`` (random crops of a source),
``pipelines`` (``tf.data`` and plain-Python batches), ``songs`` (MUSDB18-HQ-style songs),
``synth`` / ``fluidsynth`` / ``music_dataset`` (generated datasets).
"""

from keras_lincae.data.audio_io import AUDIO_EXTENSIONS
from keras_lincae.data.audio_io import SAMPLE_RATE
from keras_lincae.data.audio_io import SILENCE_RMS_DB
from keras_lincae.data.audio_io import AudioDecodeError
from keras_lincae.data.audio_io import list_audio_files
from keras_lincae.data.audio_io import load_audio
from keras_lincae.data.audio_io import resample
from keras_lincae.data.audio_io import rms_db
from keras_lincae.data.clips import AudioDecodeWarning
from keras_lincae.data.clips import clip_samples_for_frames
from keras_lincae.data.pipelines import audio_batches
from keras_lincae.data.pipelines import audio_dataset
from keras_lincae.data.songs import MUSDB_STEMS
from keras_lincae.data.songs import Clip
from keras_lincae.data.songs import SongSkipped
from keras_lincae.data.songs import clip_batches
from keras_lincae.data.songs import find_musdb_songs
from keras_lincae.data.songs import find_songs
from keras_lincae.data.songs import load_clips
from keras_lincae.data.songs import load_song_clip

__all__ = [
    "AUDIO_EXTENSIONS",
    "MUSDB_STEMS",
    "SAMPLE_RATE",
    "SILENCE_RMS_DB",
    "AudioDecodeError",
    "AudioDecodeWarning",
    "Clip",
    "SongSkipped",
    "audio_batches",
    "audio_dataset",
    "clip_batches",
    "clip_samples_for_frames",
    "find_musdb_songs",
    "find_songs",
    "list_audio_files",
    "load_audio",
    "load_clips",
    "load_song_clip",
    "resample",
    "rms_db",
]
