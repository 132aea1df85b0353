#!/usr/bin/env bash
# The wheel, checked as a user gets it: built from the tracked files only (an untracked or ignored file cannot
# hide a packaging gap), installed into a second, fresh virtual environment beside stand-in distributions that own
# generic top-level names other projects ship (evaluate, dataset, inference, common, training, highlights,
# synthetic), and every `soccer-*` command run from a folder outside the checkout (so nothing is imported from the
# source tree): `--help` for each, then a tiny real run of each (dataset -> training -> spotting -> evaluation;
# demo video -> extraction -> highlights with report.html). The wheel must hold one import package,
# soccer_highlights, and each stand-in must still import as itself at the end.
# Usage: scripts/check_wheel.sh   Env: PYTHON (default python3.11), KEEP=1 keeps the work folder, DEPS_FROM=VENV
# takes the requirements from an environment that has them instead of installing them (from pip's cache).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
WORK="$(mktemp -d)"
[[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$WORK"' EXIT
step() { echo "check_wheel: $*" >&2; }

step "building the wheel from the tracked files"
mkdir "$WORK/src"
git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null --no-recursion -T - -cf - | tar -xf - -C "$WORK/src"
"$PY" -m pip wheel -q --no-deps "$WORK/src" -w "$WORK/dist" >&2
WHEEL="$(ls "$WORK"/dist/*.whl)"

"$PY" -m venv "$WORK/venv"
BIN="$WORK/venv/bin"
if [[ -n "${DEPS_FROM:-}" ]]; then
  # The requirements as another environment has them installed (CI: its test environment, which does not hold
  # the project itself), seen through a .pth file after this environment's own site-packages: minutes saved.
  step "installing $(basename "$WHEEL") into a fresh environment (requirements seen from $DEPS_FROM)"
  "$DEPS_FROM/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
    >"$("$BIN/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/deps_from.pth"
else
  step "installing $(basename "$WHEEL") into a fresh environment (requirements from pip's cache)"
  "$BIN/python" -m pip install -q -r "$ROOT/requirements.txt" >&2
fi
step "the wheel holds one import package"
"$PY" - "$WHEEL" <<'EOF'
import sys, zipfile
tops = {name.split("/")[0] for name in zipfile.ZipFile(sys.argv[1]).namelist()}
extra = sorted(t for t in tops if t != "soccer_highlights" and not t.endswith((".dist-info", ".data")))
if extra or "soccer_highlights" not in tops:
    sys.exit(f"check_wheel: the wheel installs {sorted(tops)}; expected soccer_highlights only")
EOF

# Distributions of other projects that own the generic names, installed first: a wheel of ours that shipped one
# of these names would write into their folders, and `import NAME` would no longer give theirs.
STANDINS=(evaluate dataset inference common training highlights synthetic)
step "installing stand-in distributions of ${STANDINS[*]}"
# Each a real wheel (package NAME, IDENTITY inside), written directly: no build backend involved.
mkdir -p "$WORK/standins"
"$BIN/python" - "$WORK/standins" "${STANDINS[@]}" <<'EOF'
import base64, hashlib, sys, zipfile
from pathlib import Path

out = Path(sys.argv[1])
for name in sys.argv[2:]:
    dist = f"standin_{name}-1.0"
    files = {
        f"{name}/__init__.py": f'IDENTITY = "stand-in {name}"\n',
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: standin-{name}\nVersion: 1.0\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: check_wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n"
    with zipfile.ZipFile(out / f"{dist}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
EOF
"$BIN/python" -m pip install -q --no-deps "$WORK"/standins/*.whl >&2
"$BIN/python" -m pip install -q "$WHEEL" >&2  # with its declared dependencies: the metadata must resolve
"$BIN/python" -m pip check >&2

mkdir "$WORK/run"
cd "$WORK/run"  # outside the checkout: only the installed wheel can be imported
"$BIN/python" - "$WORK/venv" <<'EOF'
import importlib, sys
from pathlib import Path
for name in ("soccer_highlights", "soccer_highlights.commands.inference", "soccer_highlights.report.page"):
    where = Path(importlib.import_module(name).__file__).resolve()
    if Path(sys.argv[1]).resolve() not in where.parents:
        sys.exit(f"check_wheel: {name} is imported from {where}, not from the installed wheel")
EOF
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONDONTWRITEBYTECODE=1
COMMANDS=(soccer-highlights soccer-spot soccer-train soccer-evaluate soccer-extract soccer-synthetic
  soccer-synthetic-video soccer-trainset)
for cmd in "${COMMANDS[@]}"; do
  step "$cmd --help"
  "$BIN/$cmd" --help >/dev/null
done

step "soccer-synthetic: a tiny dataset"
"$BIN/soccer-synthetic" --out data --games 5 --half_minutes 2 --seed 0 --quiet
list() { ls data/listgame_"$1"_*.npy; }
step "soccer-train: two epochs (NetVLAD-4, 4 s windows)"
"$BIN/soccer-train" --architecture concat --training "$(list Train)" --validation "$(list Valid)" \
  --testing "$(list Test)" --PCA --network VLAD --VLAD_k 4 --WindowSize 4 --max_epoch 2 --formatdataset 1 --class_map highlight \
  --batch_windows 16 --tflog model --outputPrefix tiny --cache_dir cache --quiet
MODEL=model/tiny_best.keras
step "soccer-spot + soccer-evaluate"
"$BIN/soccer-spot" --testing "$(list Test)" --model "$MODEL" --output spots --quiet
"$BIN/soccer-evaluate" --labels data --predictions spots --game_list "$(list Test)" --model "$MODEL" --out scores.json
test -s scores.json

step "soccer-synthetic-video + soccer-extract + soccer-highlights (random weights, 6 s video)"
"$BIN/soccer-synthetic-video" --duration 6 --out match.mp4
"$BIN/soccer-extract" --video match.mp4 --out features --weights random --quiet
test -s features/1_VGGish.npy
"$BIN/soccer-highlights" --model "$MODEL" --out highlights --video match.mp4 --weights random --fast --quiet \
  --intro_sec 0 --outro_sec 0
test -s highlights/report.html
step "each stand-in still imports as itself"
"$BIN/python" - "${STANDINS[@]}" <<'EOF'
import importlib, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    if getattr(module, "IDENTITY", None) != f"stand-in {name}":
        sys.exit(f"check_wheel: `import {name}` gives {module.__file__}, not the stand-in distribution's {name}")
EOF
step "ok: $(basename "$WHEEL") installs one package beside the stand-ins, and every command runs from it"
