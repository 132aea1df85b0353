"""One video -> video [T, 512] and audio [T, 512] features, with decoding and audio overlapped with ResNet-152.

Three threads: ffmpeg frames are decoded into a small queue (never more than a few batches in memory),
the audio side (ffmpeg -> log-mel -> VGGish) runs on its own, and a third runs ResNet-152 + PCA.
The networks' runtime (OpenVINO on a CPU, else TensorFlow) releases the GIL, so the three overlap; on a
CPU-bound machine the network sets the pace. The caller's thread only waits, so Ctrl-C (or SIGTERM, which
`common.errors` turns into a KeyboardInterrupt) is seen at once and the run stops after the network's
current slice (4 frames on CPU) instead of its whole batch; nothing is written until a video is complete.

The feature recipe is recorded in extraction.json as `"recipe": {"video": "soccernet" | "rgb", "audio":
"channel_mean"}`; `read_recipe` / `recipe_of` read it back (records written before recipes were recorded
are the `rgb` video recipe with ffmpeg's downmix, `LEGACY_RECIPE`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from soccer_highlights.common.atomic import fingerprint, read_json, save_npy, write_json
from soccer_highlights.common.cli import FEATURE_DTYPES, FEATURE_RUNTIMES, FEATURE_WEIGHTS, spelled
from soccer_highlights.common.constants import AUDIO_FEATURES, TOKENS_PER_SECOND, VIDEO_FEATURES
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.features import (  # noqa: F401 - LEGACY_RECIPE, SOCCERNET_RECIPE, recipe_of re-exported
    LEGACY_RECIPE,
    SOCCERNET_RECIPE,
    read_record,  # a damaged record reads as None: "redo", never a crash
    recipe_of,
)
from soccer_highlights.common.inputs import check_finite
from soccer_highlights.extract_features import decode, logmel
from soccer_highlights.extract_features.fidelity import read_for_networks, read_report
from soccer_highlights.extract_features.pca import load_pca, random_pca
from soccer_highlights.extract_features.runtime import file_digest
from soccer_highlights.extract_features.stages import Stages, put

FORMAT_VERSION = 1
# Frames decoded per chunk (and per ResNet call on a GPU) unless --frames_per_call says otherwise. On a CPU the
# network is called as its measured call plan says (extract_features.call_plan): at most 8 frames a call, so a
# stop request waits for one such call only.
DECODE_CHUNK = 32
AUDIO_BLOCK_SECONDS = 15.0  # audio decoded and run through VGGish this much at a time (stop checked between)


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that changes the features (recorded in extraction.json and compared on resume)."""

    weights: str = "imagenet"  # "imagenet" | "random" (ResNet, VGGish unless --vggish given, PCA unless --pca)
    resnet_weights: str | None = None
    pca: str | None = None  # .npz; None with random weights = random orthonormal projection
    vggish: str | None = None  # None = "auto" (or "random" with --weights random)
    transform: str = "crop"
    recipe: str = decode.DEFAULT_RECIPE  # video recipe: "soccernet" | "rgb"
    compute_dtype: str = "float32"
    silent_audio: bool = False
    vggish128: bool = False
    save_raw: bool = False
    seed: int = 0
    video_name: str = VIDEO_FEATURES
    audio_name: str = AUDIO_FEATURES
    runtime: str | None = None  # "openvino" | "tensorflow"; None: OpenVINO on a CPU, TensorFlow on a GPU
    cache_dir: str | None = None  # converted OpenVINO models (default: the Keras cache folder)
    int8_model: str | None = None  # the folder `calibrate` wrote (compute_dtype "int8")

    def __post_init__(self) -> None:
        if self.weights not in ("imagenet", "random"):
            raise UserError(f"unknown --weights {self.weights!r}; choose one of {', '.join(FEATURE_WEIGHTS)}")
        if self.transform not in decode.TRANSFORMS:
            raise UserError(f"unknown --transform {self.transform!r}; choose one of {', '.join(decode.TRANSFORMS)}")
        decode.get_recipe(self.recipe)
        if self.runtime is not None and self.runtime not in FEATURE_RUNTIMES:
            raise UserError(f"unknown --feature_runtime {self.runtime!r}; choose one of {', '.join(FEATURE_RUNTIMES)}")
        if self.compute_dtype not in FEATURE_DTYPES:
            raise UserError(
                f"unknown --feature_dtype {self.compute_dtype!r}; choose one of {', '.join(FEATURE_DTYPES)}"
            )
        if self.compute_dtype == "int8" and (self.runtime == "tensorflow" or not self.int8_model):
            raise UserError(
                spelled(
                    "--feature_dtype int8 runs on OpenVINO with the model `python -m extract_features calibrate` "
                    "made: pass --int8_model DIR (and not --feature_runtime tensorflow)"
                )
            )
        if self.pca is None and self.weights != "random":
            raise UserError(
                spelled(
                    "--pca FILE.npz is required with real weights (features must match the PCA the models "
                    "were trained with): convert SoccerNet's pickles with `python -m extract_features "
                    "convert_pca ...` or fit one with `python -m extract_features fit_pca ...`"
                )
            )

    @property
    def vggish_spec(self) -> str:
        return self.vggish or ("random" if self.weights == "random" else "auto")

    def file_names(self, prefix: str) -> dict[str, str]:
        names = {"video": f"{prefix}_{self.video_name}.npy", "audio": f"{prefix}_{self.audio_name}.npy"}
        if self.save_raw:
            names["video_raw"] = f"{prefix}_ResNET_TF2.npy"
        if self.vggish128:
            names["audio_128"] = f"{prefix}_{self.audio_name}_embedding128.npy"
        return names

    def settings(self) -> dict:
        """The settings part of extraction.json (file names and seeds excluded from the resume comparison)."""
        d = asdict(self)
        # OpenVINO float32 gives TensorFlow's features: the runtime and its cache do not change them
        for key in ("save_raw", "video_name", "audio_name", "runtime", "cache_dir"):
            d.pop(key)
        if d["int8_model"] is None:
            d.pop("int8_model")
        return d


@dataclass
class ExtractedFeatures:
    video: np.ndarray  # [T, 512] float32
    audio: np.ndarray  # [T, 512] float32
    info: dict  # what extraction.json holds
    video_raw: np.ndarray | None = None  # [T, 2048] with save_raw
    audio_128: np.ndarray | None = None  # [T, 128] with vggish128
    extra: dict = field(default_factory=dict)


class Extractor:
    """The networks and PCA for one ExtractConfig (built once, reused across videos)."""

    def __init__(self, config: ExtractConfig):
        self.config = config
        self.pca = load_pca(config.pca) if config.pca else random_pca(config.seed)
        if self.pca.recipe and self.pca.recipe != config.recipe:
            print(
                f"warning: {config.pca} was fitted on features of the {self.pca.recipe!r} video recipe, these "
                f"use {config.recipe!r}: the features will not match what models trained with it saw",
                file=sys.stderr,
            )
        net = (config.runtime, config.compute_dtype, config.cache_dir, config.int8_model)
        self.resnet = _resnet(config.weights, config.resnet_weights, config.seed, *net)
        self.vggish = _vggish(config.vggish_spec, config.vggish128, config.seed + 1, *net)

    def fidelity_key(self) -> dict:
        """What a precision's fidelity figures hold for: both networks and their weights, the PCA, the video
        recipe, the runtime and the precision."""

        c = self.config
        return {
            "resnet": self.resnet.cache_key(),
            "vggish": self.vggish.cache_key(),
            "pca": f"sha256:{file_digest(c.pca)}" if c.pca else f"random:{c.seed}",
            "recipe": c.recipe,
            "transform": c.transform,
            "runtime": self.resnet.runtime,
            "compute_dtype": c.compute_dtype,
        }

    def fidelity(self) -> dict | None:
        """The recorded fidelity of this precision: int8 from its model folder, bfloat16 from the cache."""

        c = self.config
        if c.int8_model:
            return read_report(c.int8_model)
        return read_for_networks(c.cache_dir, self.fidelity_key()) if c.compute_dtype == "bfloat16" else None

    def describe(self) -> dict:
        c = self.config
        fidelity = self.fidelity()
        return {
            "format": FORMAT_VERSION,
            "weights": "random" if "random" in (self.resnet.source, self.vggish.source) else c.weights,
            "resnet": self.resnet.source,
            "vggish": self.vggish.source,
            "pca": self.pca.source,
            "recipe": {"video": c.recipe, "audio": decode.AUDIO_RECIPE},
            "transform": c.transform,
            "compute_dtype": c.compute_dtype,
            "runtime": self.resnet.runtime,
            **({"fidelity": fidelity} if fidelity else {}),
            "tokens_per_second": TOKENS_PER_SECOND,
            "token_rule": decode.get_recipe(c.recipe).token_rule,
            "audio": "mean of all channels, 16 kHz; piece i = [i/2, (i+1)/2) s -> 46x64 log-mel -> VGGish conv4_2 "
            "-> global average pool",
            "settings": c.settings(),
        }

    # ---- the three overlapped stages ------------------------------------------------------------------------

    def _audio_worker(self, path: Path, result: dict, stop: threading.Event) -> None:
        feats, emb, rest = [], [], np.zeros(0, np.float32)
        samples = 0

        with contextlib.closing(decode.AudioDecoder(path).samples(AUDIO_BLOCK_SECONDS)) as blocks:
            for block in blocks:
                if stop.is_set():
                    return
                samples += len(block)
                feats.append(self.vggish.features(decode.to_pieces(block)))
                if self.config.vggish128:
                    examples, rest = logmel.split_examples(np.concatenate([rest, block]))
                    emb.append(self.vggish.embeddings(examples))
        if self.config.vggish128 and len(rest):
            emb.append(self.vggish.embeddings(logmel.pad_example(rest)))
        result["features"] = np.concatenate(feats) if feats else np.zeros((0, 512), np.float32)
        result["embeddings"] = np.concatenate(emb) if emb else np.zeros((0, 128), np.float32)
        result["samples"] = samples

    def _decode_worker(self, path: Path, batch_size: int, frames: queue.Queue, stop: threading.Event) -> None:
        decoder = decode.VideoDecoder(path, self.config.transform, threads=1, recipe=self.config.recipe)
        try:
            with contextlib.closing(decoder.chunks(batch_size)) as chunks:
                for chunk in chunks:
                    if not put(frames, chunk, stop):
                        return
        finally:
            put(frames, None, stop)

    def _network_worker(
        self, frames: queue.Queue, step: int, video: list, raw: list, bar, stop: threading.Event, clock: dict
    ) -> None:
        """ResNet-152 + PCA over the decoded chunks, called in slices of `step` frames that are pipelined over
        the network's requests (`FrameEmbedder.stream`). `clock` gets the seconds the network waited for frames
        (`idle`: the decoder was behind; parts still in flight may compute meanwhile) and the rest (`busy`), so
        the overlap can be checked on every run."""
        started = time.perf_counter()

        def slices():
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    chunk = frames.get(timeout=0.2)
                except queue.Empty:
                    continue
                finally:
                    clock["idle"] += time.perf_counter() - t0
                if chunk is None:
                    return
                for start in range(0, len(chunk), step):
                    if stop.is_set():
                        return
                    yield chunk[start : start + step]

        try:
            # a stand-in network with only __call__ (the tests' fast fakes) is called one slice at a time
            stream = getattr(self.resnet, "stream", None)
            calls: Generator[np.ndarray, None, None] = (
                stream(slices()) if stream else (self.resnet(part) for part in slices())
            )
            with contextlib.closing(calls):
                for feats in calls:
                    if self.config.save_raw:
                        raw.append(feats)
                    video.append(self.pca.transform(feats))
                    bar.update(len(feats))
        finally:
            clock["busy"] += time.perf_counter() - started - clock["idle"]

    def run(
        self, path: str | os.PathLike, *, batch_size: int | None = None, progress: bool = True
    ) -> ExtractedFeatures:
        """Extract features of one video file (validated first: missing, not a video, no audio). `batch_size`:
        frames per decoded chunk and per network call (None: DECODE_CHUNK, and on a CPU the measured plan)."""
        path = Path(path)
        # measured (once per machine) before the other stages start, so they do not slow the measurement
        step = (batch_size or DECODE_CHUNK) if self.resnet.on_gpu else self.resnet.set_call_plan(batch_size).frames
        batch_size = batch_size or DECODE_CHUNK
        info = decode.check_video(path, need_audio=not self.config.silent_audio)
        started = time.perf_counter()
        frames: queue.Queue = queue.Queue(maxsize=4)
        stages = Stages()
        audio: dict = {}
        video: list[np.ndarray] = []
        raw: list[np.ndarray] = []
        bar = _progress(progress, decode.expected_tokens(info.duration, self.config.recipe), path.name)
        clock = {"busy": 0.0, "idle": 0.0}
        # NumPy's BLAS on one thread while the stages run: its small products (log-mel, PCA) gain nothing from
        # more, and its idle threads spin on the cores the networks need (on 2 loaded cores, log-mel cost 11x
        # the CPU time on two BLAS threads than on one; bench/results_extract.md)
        from threadpoolctl import threadpool_limits  # only where an extraction runs (start-up of the commands)

        with threadpool_limits(limits=1, user_api="blas"):
            stages.start(self._decode_worker, path, batch_size, frames, stages.stop)
            if not self.config.silent_audio:
                stages.start(self._audio_worker, path, audio, stages.stop)
            stages.start(self._network_worker, frames, step, video, raw, bar, stages.stop, clock)
            try:
                stages.wait()
            finally:
                bar.close()
        return self._result(path, info, video, raw, audio, started, clock)

    def _result(
        self, path: Path, info, video: list, raw: list, audio: dict, started: float, clock: dict
    ) -> ExtractedFeatures:
        from soccer_highlights.extract_features.audio import (  # deferred: loads TensorFlow (start-up)
            align,
            embeddings_to_tokens,
        )

        tokens = sum(len(v) for v in video)
        if tokens == 0:
            raise UserError(
                f"{path}: no video tokens (the video is empty, or shorter than the half second "
                f"one token needs under the {self.config.recipe!r} recipe)"
            )
        video_feats = np.concatenate(video)
        check_finite(video_feats, f"{path}: extracted video features")
        silence = self.vggish.silence()
        audio_feats = align(audio.get("features", np.zeros((0, 512), np.float32)), tokens, silence)
        check_finite(audio_feats, f"{path}: extracted audio features")
        audio_128 = (
            embeddings_to_tokens(audio.get("embeddings", np.zeros((0, 128), np.float32)), tokens)
            if self.config.vggish128
            else None
        )
        half = {
            "video": str(path.absolute()),
            "duration": info.duration,
            "source_fps": info.fps,
            "source_size": [info.width, info.height],
            "tokens": tokens,
            "audio_pieces": -(-audio.get("samples", 0) // decode.PIECE_SAMPLES),
            "silent_audio": self.config.silent_audio,
            "seconds": round(time.perf_counter() - started, 2),
            # ResNet-152's own time and its wait for decoded frames (which includes ffmpeg's start)
            "backbone_seconds": {"busy": round(clock["busy"], 2), "idle": round(clock["idle"], 2)},
            **({"resnet_calls": self.resnet.plan.describe()} if self.resnet.plan else {}),
        }
        return ExtractedFeatures(
            video_feats,
            audio_feats,
            {**self.describe(), "halves": {}},
            np.concatenate(raw) if raw else None,
            audio_128,
            half,
        )


# Networks are slow to build (ResNet-152: seconds): each is built once per process and settings, and shared by
# every video and every ExtractConfig that needs it.
@functools.lru_cache(maxsize=2)
def _resnet(weights, resnet_weights, seed, runtime, compute_dtype, cache_dir, int8_model):
    from soccer_highlights.extract_features.video import FrameEmbedder  # deferred: loads TensorFlow (start-up)

    net = {"runtime": runtime, "compute_dtype": compute_dtype, "cache_dir": cache_dir, "int8_model": int8_model}
    return FrameEmbedder(weights, resnet_weights=resnet_weights, seed=seed, **net)


@functools.lru_cache(maxsize=2)
def _vggish(spec, need_embedding, seed, runtime, compute_dtype, cache_dir, int8_model):
    from soccer_highlights.extract_features.audio import (  # deferred: loads TensorFlow (start-up)
        BESIDE_RESNET_THREADS,
        AudioEmbedder,
    )

    net = {"runtime": runtime, "compute_dtype": compute_dtype, "cache_dir": cache_dir, "int8_model": int8_model}
    return AudioEmbedder(spec, need_embedding=need_embedding, seed=seed, threads=BESIDE_RESNET_THREADS, **net)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int, name: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total or None, desc=name[-30:], unit="frame", leave=False, dynamic_ncols=True)


# ---- outputs ------------------------------------------------------------------------------------------------


def read_recipe(path: str | os.PathLike) -> dict[str, str]:
    """The feature recipe of a features folder (or of its extraction.json file); see `recipe_of`.
    A folder without extraction.json holds SoccerNet's released features; an unreadable one is a UserError."""

    path = Path(path)
    record_path = path / "extraction.json" if path.is_dir() else path
    if not record_path.exists():
        return recipe_of(None)
    record = read_json(record_path)
    if not isinstance(record, dict):
        raise UserError(f"{record_path}: not an extraction record (a JSON object)")
    return recipe_of(record)


def is_done(out_dir: Path, prefix: str, config: ExtractConfig) -> bool:
    """True when every output of `prefix` exists and extraction.json records it with the same settings."""
    record = read_record(out_dir)
    if not record or prefix not in record.get("halves", {}):
        return False
    if record.get("settings") != config.settings():
        raise UserError(
            f"{out_dir}: features there were extracted with other settings "
            f"({record.get('settings')}); pass --overwrite to replace them"
        )
    return all((out_dir / name).exists() for name in config.file_names(prefix).values())


def write_outputs(out_dir: Path, prefix: str, result: ExtractedFeatures, config: ExtractConfig) -> dict:
    """Write the feature files atomically, then record them in extraction.json (last, so a kill re-does them)."""
    names = config.file_names(prefix)
    arrays = {
        "video": result.video,
        "audio": result.audio,
        "video_raw": result.video_raw,
        "audio_128": result.audio_128,
    }
    for key, name in names.items():
        array = arrays[key]
        if array is None:  # the result of an Extractor with other settings than `config`
            raise ValueError(f"{name}: the extraction made no {key} features ({config.settings()})")
        save_npy(out_dir / name, array)
    record = read_record(out_dir) or {}
    if record.get("settings") != config.settings():
        record = {}
    halves = record.get("halves", {})
    # size and SHA-256 of each file, so that a reader can tell these files from others of the same name
    halves[prefix] = {
        **result.extra,
        "files": names,
        "fingerprints": {n: fingerprint(out_dir / n) for n in names.values()},
    }
    info = {**result.info, "halves": dict(sorted(halves.items()))}
    write_json(out_dir / "extraction.json", info)
    return info


def extract_file(
    video_path: str | os.PathLike,
    *,
    weights: str = "imagenet",
    pca: str | os.PathLike | None = None,
    vggish: str = "auto",
    transform: str = "crop",
    recipe: str = decode.DEFAULT_RECIPE,
    batch_size: int | None = None,
    compute_dtype: str = "float32",
    progress: bool = True,
    resnet_weights: str | None = None,
    silent_audio: bool = False,
    vggish128: bool = False,
    seed: int = 0,
    prefix: str = "1",
    runtime: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    int8_model: str | os.PathLike | None = None,
) -> ExtractedFeatures:
    """Features of one match video (Python API used by inference): video/audio [T, 512] and the info dict."""
    config = ExtractConfig(
        weights=weights,
        resnet_weights=str(resnet_weights) if resnet_weights else None,
        pca=str(pca) if pca else None,
        vggish=None if vggish == "auto" else str(vggish),
        transform=transform,
        recipe=recipe,
        compute_dtype=compute_dtype,
        silent_audio=silent_audio,
        vggish128=vggish128,
        seed=seed,
        runtime=runtime,
        cache_dir=str(cache_dir) if cache_dir else None,
        int8_model=str(int8_model) if int8_model else None,
    )
    decode.check_video(video_path, need_audio=not silent_audio)  # fail fast, before building networks
    result = Extractor(config).run(video_path, batch_size=batch_size, progress=progress)
    result.info["halves"] = {prefix: {**result.extra, "files": config.file_names(prefix)}}
    return result
