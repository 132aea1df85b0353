"""One video -> video [T, 512] and audio [T, 512] features, with decoding and audio overlapped with ResNet-152.

Three threads: ffmpeg frames are decoded into a small queue (never more than a few batches in memory),
the audio side (ffmpeg -> log-mel -> VGGish) runs on its own, and the caller's thread runs ResNet-152 +
PCA. TensorFlow releases the GIL, so the three overlap; on a CPU-bound machine the network sets the pace.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.atomic import save_npy, write_json
from common.errors import UserError
from extract_features import decode

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that changes the features (recorded in extraction.json and compared on resume)."""

    weights: str = "imagenet"  # "imagenet" | "random" (ResNet, VGGish unless --vggish given, PCA unless --pca)
    resnet_weights: str | None = None
    pca: str | None = None  # .npz; None with random weights = random orthonormal projection
    vggish: str | None = None  # None = "auto" (or "random" with --weights random)
    transform: str = "crop"
    compute_dtype: str = "float32"
    silent_audio: bool = False
    vggish128: bool = False
    save_raw: bool = False
    seed: int = 0
    video_name: str = "ResNET_TF2_PCA512"
    audio_name: str = "VGGish"

    def __post_init__(self) -> None:
        if self.weights not in ("imagenet", "random"):
            raise UserError(f"unknown --weights {self.weights!r}; choose imagenet or random")
        if self.transform not in decode.TRANSFORMS:
            raise UserError(f"unknown --transform {self.transform!r}; choose one of {', '.join(decode.TRANSFORMS)}")
        if self.pca is None and self.weights != "random":
            raise UserError("--pca FILE.npz is required with real weights (features must match the PCA the models "
                            "were trained with): convert SoccerNet's pickles with `python -m extract_features "
                            "convert_pca ...` or fit one with `python -m extract_features fit_pca ...`")

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
        for key in ("save_raw", "video_name", "audio_name"):
            d.pop(key)
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
        from extract_features.pca import load_pca, random_pca

        self.config = config
        self.pca = load_pca(config.pca) if config.pca else random_pca(config.seed)
        self.resnet = _resnet(config.weights, config.resnet_weights, config.compute_dtype, config.seed)
        self.vggish = _vggish(config.vggish_spec, config.vggish128, config.seed + 1)

    def describe(self) -> dict:
        c = self.config
        return {
            "format": FORMAT_VERSION,
            "weights": "random" if "random" in (self.resnet.source, self.vggish.source) else c.weights,
            "resnet": self.resnet.source,
            "vggish": self.vggish.source,
            "pca": self.pca.source,
            "transform": c.transform,
            "compute_dtype": c.compute_dtype,
            "frames_per_second": decode.FPS,
            "token_rule": "token i = frame on screen at i/2 s; T = ceil(2 * video duration)",
            "audio": "16 kHz mono, 0.5 s pieces -> 46x64 log-mel -> VGGish conv4_2 -> global average pool",
            "settings": c.settings(),
        }

    # ---- the three overlapped stages ------------------------------------------------------------------------

    def _audio_worker(self, path: Path, result: dict, stop: threading.Event) -> None:
        feats, emb, rest = [], [], np.zeros(0, np.float32)
        samples = 0
        from extract_features import logmel

        with contextlib.closing(decode.AudioDecoder(path).samples()) as blocks:
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

    def run(self, path: str | os.PathLike, *, batch_size: int = 32, progress: bool = True) -> ExtractedFeatures:
        """Extract features of one video file (validated first: missing, not a video, no audio)."""
        from extract_features.audio import align, embeddings_to_tokens

        path = Path(path)
        info = decode.check_video(path, need_audio=not self.config.silent_audio)
        started = time.perf_counter()
        frames: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()
        audio: dict = {}
        errors: list[BaseException] = []

        def guarded(fn, *args):
            def body():
                try:
                    fn(*args)
                except BaseException as exc:  # surfaced in the caller's thread below
                    errors.append(exc)
                    stop.set()
            return body

        def decode_worker():
            decoder = decode.VideoDecoder(path, self.config.transform, threads=1)
            try:
                with contextlib.closing(decoder.chunks(batch_size)) as chunks:
                    for chunk in chunks:
                        while not stop.is_set():
                            with contextlib.suppress(queue.Full):
                                frames.put(chunk, timeout=0.2)
                                break
                        if stop.is_set():
                            return
            finally:
                frames.put(None)

        workers = [threading.Thread(target=guarded(decode_worker), daemon=True)]
        if not self.config.silent_audio:
            workers.append(threading.Thread(target=guarded(self._audio_worker, path, audio, stop), daemon=True))
        for w in workers:
            w.start()

        video, raw = [], []
        bar = _progress(progress, decode.expected_tokens(info.duration), path.name)
        try:
            while True:
                chunk = frames.get()
                if chunk is None:
                    break
                feats = self.resnet(chunk)
                if self.config.save_raw:
                    raw.append(feats)
                video.append(self.pca.transform(feats))
                bar.update(len(chunk))
        finally:
            stop.set()
            bar.close()
            with contextlib.suppress(queue.Empty):
                while True:
                    frames.get_nowait()
            for w in workers:
                w.join()
        if errors:
            raise errors[0]

        tokens = sum(len(v) for v in video)
        if tokens == 0:
            raise UserError(f"{path}: no video frames decoded (empty or zero-length video)")
        video_feats = np.concatenate(video)
        silence = self.vggish.silence()
        audio_feats = align(audio.get("features", np.zeros((0, 512), np.float32)), tokens, silence)
        audio_128 = (embeddings_to_tokens(audio.get("embeddings", np.zeros((0, 128), np.float32)), tokens)
                     if self.config.vggish128 else None)
        half = {
            "video": str(path.absolute()),
            "duration": info.duration,
            "source_fps": info.fps,
            "source_size": [info.width, info.height],
            "tokens": tokens,
            "audio_pieces": -(-audio.get("samples", 0) // decode.PIECE_SAMPLES),
            "silent_audio": self.config.silent_audio,
            "seconds": round(time.perf_counter() - started, 2),
        }
        return ExtractedFeatures(video_feats, audio_feats, {**self.describe(), "halves": {}},
                                 np.concatenate(raw) if raw else None, audio_128, half)


# Networks are slow to build (ResNet-152: seconds): each is built once per process and settings, and shared by
# every video and every ExtractConfig that needs it.
@functools.lru_cache(maxsize=2)
def _resnet(weights: str, resnet_weights: str | None, compute_dtype: str, seed: int):
    from extract_features.video import ResNetEmbedder

    return ResNetEmbedder(weights, resnet_weights=resnet_weights, compute_dtype=compute_dtype, seed=seed)


@functools.lru_cache(maxsize=2)
def _vggish(spec: str, need_embedding: bool, seed: int):
    from extract_features.audio import AudioEmbedder

    return AudioEmbedder(spec, need_embedding=need_embedding, seed=seed)


def get_extractor(config: ExtractConfig) -> Extractor:
    return Extractor(config)


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


def read_record(out_dir: Path) -> dict | None:
    p = out_dir / "extraction.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged record means "redo", never a crash


def is_done(out_dir: Path, prefix: str, config: ExtractConfig) -> bool:
    """True when every output of `prefix` exists and extraction.json records it with the same settings."""
    record = read_record(out_dir)
    if not record or prefix not in record.get("halves", {}):
        return False
    if record.get("settings") != config.settings():
        raise UserError(f"{out_dir}: features there were extracted with other settings "
                        f"({record.get('settings')}); pass --overwrite to replace them")
    return all((out_dir / name).exists() for name in config.file_names(prefix).values())


def write_outputs(out_dir: Path, prefix: str, result: ExtractedFeatures, config: ExtractConfig) -> dict:
    """Write the feature files atomically, then record them in extraction.json (last, so a kill re-does them)."""
    names = config.file_names(prefix)
    arrays = {"video": result.video, "audio": result.audio, "video_raw": result.video_raw,
              "audio_128": result.audio_128}
    for key, name in names.items():
        save_npy(out_dir / name, arrays[key])
    record = read_record(out_dir) or {}
    if record.get("settings") != config.settings():
        record = {}
    halves = record.get("halves", {})
    halves[prefix] = {**result.extra, "files": names}
    info = {**result.info, "halves": dict(sorted(halves.items()))}
    write_json(out_dir / "extraction.json", info)
    return info


def extract_file(video_path: str | os.PathLike, *, weights: str = "imagenet", pca: str | os.PathLike | None = None,
                 vggish: str = "auto", transform: str = "crop", batch_size: int = 32,
                 compute_dtype: str = "float32", progress: bool = True, resnet_weights: str | None = None,
                 silent_audio: bool = False, vggish128: bool = False, seed: int = 0,
                 prefix: str = "1") -> ExtractedFeatures:
    """Features of one match video (Python API used by inference): video/audio [T, 512] and the info dict."""
    config = ExtractConfig(weights=weights, resnet_weights=str(resnet_weights) if resnet_weights else None,
                           pca=str(pca) if pca else None,
                           vggish=None if vggish == "auto" else str(vggish), transform=transform,
                           compute_dtype=compute_dtype, silent_audio=silent_audio, vggish128=vggish128, seed=seed)
    decode.check_video(video_path, need_audio=not silent_audio)  # fail fast, before building networks
    result = get_extractor(config).run(video_path, batch_size=batch_size, progress=progress)
    result.info["halves"] = {prefix: {**result.extra, "files": config.file_names(prefix)}}
    return result
