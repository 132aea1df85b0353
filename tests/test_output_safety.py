"""Outputs stay ours: folder names made from video names are safe, unique and independent of input order; a run
never writes beside `--out`; only files an earlier run recorded are removed; a re-run says which folders it left.
Videos come with their features already beside them (as `python -m extract_features --list` writes them), so
nothing is extracted."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights.commands import inference
from soccer_highlights.common.atomic import MANIFEST, OutputSet, fingerprint
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.names import safe_name, unique_names
from soccer_highlights.synthetic.video import make_match_video

D = 512


@pytest.fixture(scope="module")
def match(tmp_path_factory) -> Path:
    return make_match_video(tmp_path_factory.mktemp("match") / "match.mp4", 6, size="64x36")


def _place(match: Path, path: Path, homes: list[Path] | None = None) -> Path:
    """`match` copied to `path`, with features where inference looks for them (`homes`: extra folders)."""
    from soccer_highlights.extract_features.batch import feature_home

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(match.read_bytes())
    files = {"video": "1_ResNET_TF2_PCA512.npy", "audio": "1_VGGish.npy"}
    for folder in [feature_home(path)[0], *(homes or [])]:
        folder.mkdir(parents=True, exist_ok=True)
        for name in files.values():
            np.save(folder / name, np.random.default_rng(0).normal(size=(12, D)).astype(np.float32))
        prints = {n: fingerprint(folder / n) for n in files.values()}  # as the extraction records them
        half = {"tokens": 12, "files": files, "fingerprints": prints}
        (folder / "extraction.json").write_text(json.dumps({"halves": {"1": half}}))
    return path


def _infer(model: Path, out: Path, *inputs: Path | str) -> int:
    return inference.main(["--model", str(model), "--out", str(out), *map(str, inputs), "--no_reel", "--quiet"])


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "hostile",
    ["...mp4", "..mp4", ".mp4", ".mp4.mp4", " .. .mp4", ".partial.1.abcdefgh.mp4", ".outputs.json.mp4",
     "index.html.mp4", "two\nlines.mp4", "tab\there\r.mp4", "-y.mp4"],
)  # fmt: skip
def test_a_video_named_like_a_parent_folder_writes_inside_out_only(hostile, tiny_model, match, tmp_path):
    """`...mp4` has stem `..`: its folder was OUT/.. (the parent of --out), whose files were overwritten or
    removed. Features are put both where they are looked for now and where they were (`vids/..`)."""
    parent = tmp_path / "parent"
    (parent / "highlights.mp4").parent.mkdir(parents=True)
    (parent / "highlights.mp4").write_bytes(b"the user's own reel")
    video = _place(match, tmp_path / "vids" / hostile, homes=[tmp_path])
    before = _tree(tmp_path)
    assert _infer(tiny_model, parent / "OUT", video) == 0
    assert (parent / "highlights.mp4").read_bytes() == b"the user's own reel"
    written = _tree(tmp_path) - before
    assert written and all(w == "parent/OUT" or w.startswith("parent/OUT/") for w in written), written
    folders = [p for p in (parent / "OUT").iterdir() if p.is_dir()]
    assert len(folders) == 1 and not folders[0].name.startswith(".") and folders[0].name.isprintable()
    assert (folders[0] / "report.html").is_file()


def test_a_video_named_index_html_gets_its_own_folder_and_the_index_is_written(tiny_model, match, tmp_path):
    vids = tmp_path / "vids"
    for name in ("index.html.mp4", "INDEX.HTML.mkv", "a.mp4"):
        _place(match, vids / name)
    out = tmp_path / "out"
    assert _infer(tiny_model, out, vids) == 0
    assert (out / "index.html").is_file()
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(names) == 3 and "a" in names and all(n.lower() != "index.html" for n in names)


def test_folder_names_do_not_depend_on_input_order(tiny_model, match, tmp_path, caplog):
    """Two videos named match.mp4 in two folders: each gets the same folder whatever the order; a re-run with
    one of them says which folders hold an earlier run's results."""
    a, b = _place(match, tmp_path / "x" / "match.mp4"), _place(match, tmp_path / "y" / "match.mp4")
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    assert _infer(tiny_model, out1, a, b) == 0 and _infer(tiny_model, out2, b, a) == 0
    assert _tree(out1) == _tree(out2)
    assert unique_names([a, b]) == unique_names([b, a])[::-1]
    caplog.clear()
    assert _infer(tiny_model, out1, a) == 0
    earlier = sorted(unique_names([a, b]))
    assert f"{', '.join(earlier)} hold results of an earlier run, not of this one" in caplog.text


def test_the_same_video_twice_is_done_once(tiny_model, match, tmp_path, caplog):
    video = _place(match, tmp_path / "v" / "m.mp4")
    out = tmp_path / "out"
    assert _infer(tiny_model, out, video, tmp_path / "v") == 0
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "index.html", "m"]  # index.html recorded as ours
    assert "given more than once, done once" in caplog.text


def test_an_output_folder_linked_elsewhere_is_refused(tiny_model, match, tmp_path, capsys):
    video = _place(match, tmp_path / "v" / "m.mp4")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "m").symlink_to(tmp_path / "elsewhere")
    assert _infer(tiny_model, tmp_path / "out", video) == 1
    assert "outside the output folder" in capsys.readouterr().err
    assert not any((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize(
    ("name", "safe"),
    [("..", "video"), (".", "video"), ("", "video"), (" ", "video"), ("a/b", "a_b"), ("a\x00b", "a_b"),
     (".hidden", "hidden"), ("index.html", "index.html_"), ("first match", "first match"), ("-x", "-x")],
)  # fmt: skip
def test_safe_name(name, safe):
    assert safe_name(name, reserved=("index.html",)) == safe


def test_output_set_removes_only_what_an_earlier_run_recorded(tmp_path, caplog):
    with OutputSet(tmp_path, ["a.json", "b.json"]) as files:
        files.path("a.json").write_text("1")
        files.path("b.json").write_text("1")
    assert json.loads((tmp_path / MANIFEST).read_text())["written"] == ["a.json", "b.json"]
    with OutputSet(tmp_path, ["a.json", "b.json", "c.json"]) as files:
        files.path("a.json").write_text("2")
    (tmp_path / "c.json").write_text("the user's")
    with pytest.raises(UserError, match="c.json was not written by this project"):
        OutputSet(tmp_path, ["a.json", "b.json", "c.json"])
    with OutputSet(tmp_path, ["a.json", "b.json", "c.json"], keep_old=True) as files:
        files.path("a.json").write_text("3")
    assert not (tmp_path / "b.json").exists() and (tmp_path / "c.json").read_text() == "the user's"
    assert "kept c.json: not written by this run" in caplog.text


def test_a_record_of_the_earlier_format_is_accepted_for_files_unchanged_since(tmp_path, caplog):
    """A folder whose .outputs.json an earlier version wrote (names only, no sizes or hashes): its files count as a
    run's while their status has not changed since the record was written (ctime not after the record's mtime),
    so the first re-run is not refused; the record is then rewritten with fingerprints. A listed file changed
    since (here: the record made older than it) is the user's: refused, naming it and --keep_old."""
    import os

    for name in ("a.json", "b.json", "c.json"):
        (tmp_path / name).write_text("earlier run")
    (tmp_path / MANIFEST).write_text(json.dumps({"written": ["a.json", "b.json"]}))
    with OutputSet(tmp_path, ["a.json", "b.json"]) as files:
        files.path("a.json").write_text("this run")
    assert (tmp_path / "a.json").read_text() == "this run" and not (tmp_path / "b.json").exists()
    assert "removed b.json of an earlier run" in caplog.text
    assert set(json.loads((tmp_path / MANIFEST).read_text())["files"]["a.json"]) == {"size", "sha256"}

    (tmp_path / MANIFEST).write_text(json.dumps({"written": ["c.json"]}))
    past = (tmp_path / "c.json").stat().st_ctime - 60  # as if c.json had been written after the record
    os.utime(tmp_path / MANIFEST, (past, past))
    with pytest.raises(UserError, match=r"c.json was not written by this project \(or changed since\).*--keep_old"):
        OutputSet(tmp_path, ["c.json"])
    assert (tmp_path / "c.json").read_text() == "earlier run"


def test_output_set_refuses_an_input_among_its_outputs(tmp_path):
    (tmp_path / "a.json").write_text("input")
    with pytest.raises(UserError, match="a.json: an input of this run is also its output a.json"):
        OutputSet(tmp_path, ["a.json"], inputs=[tmp_path / "." / "a.json"])
    assert (tmp_path / "a.json").read_text() == "input"


@pytest.mark.slow
def test_a_truncated_video_is_named_as_such_and_its_reel_stays_within_what_decodes(tiny_model, tmp_path, caplog):
    """A faststart MP4 cut to a quarter of its bytes: its container still says 20 s, only ~5 s decode. The warning
    says so (not "features of another video?"), and the subtitles stop where the reel does."""
    from soccer_highlights.common.ffmpeg import media_arg, run_ffmpeg

    whole = make_match_video(tmp_path / "whole.mp4", 20, size="64x36")
    fast = tmp_path / "fast.mp4"
    run_ffmpeg(["-i", media_arg(whole), "-c", "copy", "-movflags", "+faststart", media_arg(fast)], "remux")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size // 4])
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model), "--out", str(out), "--video", str(cut), "--weights", "random", "--quiet"]
    assert inference.main([*argv, "--intro_sec", "2", "--outro_sec", "2"]) == 0
    assert "container says 20.0 s but only" in caplog.text and "from this video?" not in caplog.text
    decoded = float(caplog.text.split("but only ")[1].split(" s")[0])
    assert decoded < 10
    ends = [line.split(" --> ")[1] for line in (out / "highlights.srt").read_text().splitlines() if " --> " in line]
    h, m, s = ends[-1].replace(",", ".").split(":")
    assert int(h) * 3600 + int(m) * 60 + float(s) <= decoded + 0.5


def test_a_video_inside_another_videos_output_folder_is_not_replaced(tiny_model, match, tmp_path, capsys):
    """out/a/highlights.mp4 is one of the inputs, and out/a/ is where a.mp4's outputs go: a.mp4 is refused, the
    other video done, the input untouched."""
    out = tmp_path / "out"
    inside = _place(match, out / "a" / "highlights.mp4")
    a = _place(match, tmp_path / "v" / "a.mp4")
    before = inside.read_bytes()
    code = inference.main(["--model", str(tiny_model), "--out", str(out), str(a), str(inside), "--quiet"])
    assert code == 1
    assert "an input of this run is also its output highlights.mp4" in capsys.readouterr().err
    assert inside.read_bytes() == before


@pytest.mark.parametrize("inside", ["r_resume/train.txt", "r_summary.json", "r_training"])
def test_an_input_inside_the_runs_outputs_is_refused_and_kept(tmp_path, inside):
    """A game list (or the dataset root) among the outputs --overwrite removes: refused before anything is removed."""
    given = tmp_path / inside
    given.parent.mkdir(parents=True, exist_ok=True)
    given.write_text("game\n") if given.suffix else given.mkdir()
    from soccer_highlights.training.checkpoints import claim_outputs, release_outputs
    from soccer_highlights.training.config import TrainConfig

    as_list = TrainConfig(
        architecture="video", tflog=str(tmp_path), output_prefix="r", overwrite=True, training=str(given)
    )
    as_root = replace(as_list, training="train", data=replace(as_list.data, dataset_root=str(given)))
    for cfg in (as_list, as_root):
        with pytest.raises(UserError, match="an input of this run lies in its output"):
            claim_outputs(cfg)
        assert given.exists()
    release_outputs(as_list)
    elsewhere = replace(as_list, training=str(tmp_path / "elsewhere.txt"))  # beside the outputs: fine, but the
    with pytest.raises(UserError, match="not written by this project"):  # file no run wrote is not replaced
        claim_outputs(elsewhere)
    release_outputs(as_list)
    claim_outputs(replace(elsewhere, keep_old=True))
    release_outputs(as_list)
    top = inside.split("/")[0]
    kept = tmp_path / (top.replace(".", ".old-1.") if "." in top else f"{top}.old-1") / inside[len(top) + 1 :]
    assert not given.exists() and kept.exists()


@pytest.mark.slow
def test_the_users_files_with_output_names_refuse_the_run_or_are_kept_aside(tiny_model, match, tmp_path, capsys):
    """issue 30.1, docs/real-match.md as written: a file of the user's with an output's name is never replaced or
    removed. Without --keep_old the run is refused before any work, with one line naming the files and the ways
    out; with it, each is kept as NAME.old-N.EXT. On 643e491 both files were replaced without a word."""
    video = _place(match, tmp_path / "v" / "m.mp4")
    out = tmp_path / "out"
    out.mkdir()
    (out / "highlights.mp4").write_bytes(b"the user's own video")
    (out / "report.html").write_text("the user's notes")
    base = ["--model", str(tiny_model), "--out", str(out), "--video", str(video), "--quiet"]
    base += ["--features_video", str(video.with_suffix("") / "1_ResNET_TF2_PCA512.npy")]
    base += ["--features_audio", str(video.with_suffix("") / "1_VGGish.npy"), "--intro_sec", "1", "--outro_sec", "1"]
    with pytest.raises(UserError) as info:
        inference.main(base)
    message = str(info.value)
    assert "report.html, highlights.mp4 were not written by this project" in message, message
    assert "choose another --out" in message and "--keep_old" in message
    assert sorted(p.name for p in out.iterdir()) == ["highlights.mp4", "report.html"]  # nothing done
    assert inference.main([*base, "--keep_old"]) == 0
    assert (out / "highlights.old-1.mp4").read_bytes() == b"the user's own video"
    assert (out / "report.old-1.html").read_text() == "the user's notes"
    assert (out / "report.html").read_text() != "the user's notes" and (out / "highlights.mp4").stat().st_size > 1000
    assert inference.main(base) == 0  # its own files, unchanged since: replaced without a word
    assert sorted(p.name for p in out.glob("*.old-*")) == ["highlights.old-1.mp4", "report.old-1.html"]


@pytest.mark.slow
def test_the_users_index_html_in_a_many_videos_out_is_kept(tiny_model, match, tmp_path):
    video = _place(match, tmp_path / "v" / "m.mp4")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("the user's index")
    with pytest.raises(UserError, match="index.html was not written by this project"):
        _infer(tiny_model, out, video)
    assert _infer(tiny_model, out, video, "--keep_old") == 0
    assert (out / "index.old-1.html").read_text() == "the user's index"
    assert _infer(tiny_model, out, video) == 0  # the index is the project's now


@pytest.mark.slow
@pytest.mark.parametrize(
    "spoil, why",
    [
        ("no record", "m/extraction.json does not describe half 1"),
        ("audio of another extraction", "1_VGGish.npy is 20608 bytes, extraction.json recorded 24704"),
        (
            "audio of another extraction, same shape",
            "1_VGGish.npy is not the file extraction.json recorded (its SHA-256",
        ),
        ("earlier record, video replaced after it", "1_ResNET_TF2_PCA512.npy was written after extraction.json"),
        ("earlier record, audio of another extraction", "1_VGGish.npy has 10 rows, extraction.json says 12 tokens"),
    ],
)
def test_features_beside_a_video_are_reused_only_as_extraction_json_describes_them(
    spoil, why, tiny_model, match, tmp_path, caplog, monkeypatch
):
    """issue 30.6: on 643e491 the two files beside a video were used whenever both existed, so a pair from two
    extractions (or a file replaced since) was scored. Now extraction.json must describe both (their sizes and
    SHA-256 as the extraction recorded them; in an earlier version's record, their rows and times); else the video
    is extracted again, with one line saying why."""
    import os

    from soccer_highlights.extract_features import pipeline
    from tests.live_fakes import FastFrames

    monkeypatch.setattr(pipeline, "_resnet", lambda *args: FastFrames())
    video = _place(match, tmp_path / "v" / "m.mp4")
    feats = video.parent / "m"
    if spoil.startswith("earlier record"):  # an extraction.json of an earlier version: no sizes, no hashes
        record = json.loads((feats / "extraction.json").read_text())
        del record["halves"]["1"]["fingerprints"]
        (feats / "extraction.json").write_text(json.dumps(record))
    if spoil == "no record":
        (feats / "extraction.json").unlink()
    elif spoil.endswith("same shape"):
        np.save(feats / "1_VGGish.npy", np.zeros((12, D), np.float32))
    elif spoil.endswith("audio of another extraction"):
        np.save(feats / "1_VGGish.npy", np.zeros((10, D), np.float32))
    else:
        later = (feats / "extraction.json").stat().st_mtime + 60
        os.utime(feats / "1_ResNET_TF2_PCA512.npy", (later, later))
    out = tmp_path / "out"
    assert _infer(tiny_model, out, video, "--weights", "random") == 0
    line = next(r.getMessage() for r in caplog.records if "the features beside it are not used (" in r.getMessage())
    assert why in line and line.endswith("): extracted again"), line
    assert "features_video" not in json.loads((out / "m" / "spans.json").read_text())["source"]


def test_the_extractors_record_is_what_inference_checks_features_against(tmp_path):
    """extraction.json records each feature file's size and SHA-256 as the extraction wrote it; inference reuses
    the pair beside a video only while both are those files (another file of the same shape is refused)."""
    from soccer_highlights.extract_features.pipeline import ExtractConfig, ExtractedFeatures, write_outputs

    rng = np.random.default_rng(0)
    video, audio = (rng.normal(size=(12, D)).astype(np.float32) for _ in range(2))
    config = ExtractConfig(weights="random")
    info = {"recipe": {"video": "soccernet", "audio": "channel_mean"}, "settings": config.settings()}
    write_outputs(tmp_path, "1", ExtractedFeatures(video, audio, info, extra={"tokens": 12}), config)
    half = json.loads((tmp_path / "extraction.json").read_text())["halves"]["1"]
    files = [tmp_path / half["files"][role] for role in ("video", "audio")]
    assert half["fingerprints"] == {f.name: fingerprint(f) for f in files}
    assert inference.unusable_features(tmp_path, "1", files, None) is None
    np.save(files[1], video)  # same shape and size, other content: a file of another extraction
    assert "1_VGGish.npy is not the file extraction.json recorded" in inference.unusable_features(
        tmp_path, "1", files, None
    )
