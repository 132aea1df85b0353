#!/usr/bin/env bash
# Highlights for match videos -- or, with no arguments, the demo.
#
#   bash run_inference.sh                                  # demo: synthetic match + demo model -> demo_output/
#   bash run_inference.sh --model M.keras match.mp4        # one video
#   bash run_inference.sh --model M.keras videos/          # every video in a folder (.mp4 .mkv .avi .mov .webm .ts
#                                                          #   .m4v .mpg .mpeg), all in one process
#   bash run_inference.sh --model M.keras list.txt         # one video per line (relative to the list; # comments)
#   bash run_inference.sh --model M.keras --live SOURCE    # a live stream (udp://, srt://, rtmp://, .m3u8, a file
#                                                          #   still being written): clips/, highlights.m3u8 and
#                                                          #   spans.jsonl grow while it plays (default out: live_output)
#
# Settings, as flags or environment variables (flags win):
#   --model M            MODEL           .keras model (for your own videos: one trained on SoccerNet features)
#   --out DIR            OUT             output root, one folder per video (default inference_output; demo: demo_output)
#   --live SOURCE        LIVE            a live stream instead of videos (see python inference.py --help: --live_*)
#   --weights W          WEIGHTS         extraction weights: imagenet (default; needs --pca) | random (smoke tests only)
#   --pca F              PCA             PCA .npz fitted on the training features (see extract_features --help)
#   --fast               FAST=1          stream-copy reel: cuts snap to keyframes
#   --max_total_sec S    MAX_TOTAL_SEC   total reel length budget
#   --decoder_config J   DECODER_CONFIG  decoder figures (JSON)
#   --intro_sec S        INTRO_SEC       seconds of the match start to open the reel with (default 15, as the seed; 0: none)
#   --outro_sec S        OUTRO_SEC       seconds of the match end to close it with (default 15, as the seed; 0: none)
#   -- ARGS...                           passed to inference.py unchanged (see python inference.py --help)
#   VENV (default .venv; created by scripts/setup_env.sh when missing), DEMO_DATA (default demo_data),
#   DEMO_THRESHOLD (default 0.2: the small demo model is less confident than the seed's thresholds of 0.5 assume)
#   DEMO_CLIP_SEC (default 20: the clip the demo extracts features from, timed, as for a real video)
#
# The demo model is trained on synthetic features (scripts/demo_train.sh): it knows synthetic events, not football.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$ROOT/.venv}"
MODEL="${MODEL:-}"
OUT="${OUT:-}"
WEIGHTS="${WEIGHTS:-imagenet}"
PCA="${PCA:-}"
FAST="${FAST:-0}"
MAX_TOTAL_SEC="${MAX_TOTAL_SEC:-}"
DECODER_CONFIG="${DECODER_CONFIG:-}"
LIVE="${LIVE:-}"
INTRO_SEC="${INTRO_SEC:-15}"
OUTRO_SEC="${OUTRO_SEC:-15}"
DEMO_DATA="${DEMO_DATA:-}"
DEMO_THRESHOLD="${DEMO_THRESHOLD:-0.2}"
DEMO_CLIP_SEC="${DEMO_CLIP_SEC:-20}"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }
# the value of option $1, given as $2: one `error:` line and exit 2 when it is missing (or is another option)
value() { if (($# < 2)) || [[ -z "$2" || "$2" == --* ]]; then die "$1 needs a value"; fi; printf '%s' "$2"; }

inputs=()
passthrough=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --model) MODEL="$(value "$@")" || exit 2; shift 2 ;;
    --out) OUT="$(value "$@")" || exit 2; shift 2 ;;
    --live) LIVE="$(value "$@")" || exit 2; shift 2 ;;
    --weights) WEIGHTS="$(value "$@")" || exit 2; shift 2 ;;
    --pca) PCA="$(value "$@")" || exit 2; shift 2 ;;
    --fast) FAST=1; shift ;;
    --max_total_sec) MAX_TOTAL_SEC="$(value "$@")" || exit 2; shift 2 ;;
    --decoder_config) DECODER_CONFIG="$(value "$@")" || exit 2; shift 2 ;;
    --intro_sec) INTRO_SEC="$(value "$@")" || exit 2; shift 2 ;;
    --outro_sec) OUTRO_SEC="$(value "$@")" || exit 2; shift 2 ;;
    --) shift; passthrough=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) inputs+=("$1"); shift ;;
  esac
done

if [[ ! -x "$VENV/bin/python" ]]; then
  VENV="$VENV" "$ROOT/scripts/setup_env.sh"
fi
PY="$VENV/bin/python"

# inference.py runs in the background so that a SIGTERM or Ctrl-C sent to this script reaches it (as SIGTERM):
# it removes its temporary files and leaves the output folder as it was; then the script stops (143 / 130).
child=0
stop() {
  if ((child)); then kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi
  exit "$1"
}
trap 'stop 143' TERM
trap 'stop 130' INT
infer() {
  "$PY" "$ROOT/inference.py" "$@" &
  child=$!
  local code=0
  wait "$child" || code=$?
  child=0
  return "$code"
}

# Settings shared by every inference.py call.
settings=(--intro_sec "$INTRO_SEC" --outro_sec "$OUTRO_SEC")
[[ "$FAST" == 1 ]] && settings+=(--fast)
[[ -n "$MAX_TOTAL_SEC" ]] && settings+=(--max_total_sec "$MAX_TOTAL_SEC")
[[ -n "$DECODER_CONFIG" ]] && settings+=(--decoder_config "$DECODER_CONFIG")
settings+=("${passthrough[@]}")

# Videos, folders and lists all go to one inference.py process (the networks are built once).
run_videos() {
  [[ -n "$MODEL" ]] || die "give a model: --model M.keras or MODEL=... (run with no arguments for the demo)"
  local extract=(--weights "$WEIGHTS")
  [[ -n "$PCA" ]] && extract+=(--pca "$PCA")
  local code=0
  infer --model "$MODEL" --out "${OUT:-inference_output}" "${extract[@]}" "${settings[@]}" -- "${inputs[@]}" || code=$?
  exit "$code"
}

# A live stream: one inference.py --live process; SIGTERM or Ctrl-C finishes its outputs like an offline run.
run_live() {
  [[ -n "$MODEL" ]] || die "give a model: --model M.keras or MODEL=..."
  ((${#inputs[@]} == 0)) || die "--live takes no video inputs (the stream is the input): ${inputs[0]}"
  local extract=(--weights "$WEIGHTS")
  [[ -n "$PCA" ]] && extract+=(--pca "$PCA")
  local code=0
  infer --model "$MODEL" --out "${OUT:-live_output}" --live "$LIVE" "${extract[@]}" "${settings[@]}" || code=$?
  exit "$code"
}

demo() {
  # The demo runs in the checkout and names its files relative to it, as the README shows them; an OUT, DEMO_DATA,
  # MODEL or VENV given relative to where the script was started is made absolute first.
  local here="$PWD"
  abs() { if [[ -z "$1" || "$1" == /* ]]; then printf '%s' "$1"; else printf '%s/%s' "$here" "$1"; fi; }
  OUT="$(abs "$OUT")" MODEL="$(abs "$MODEL")" PY="$(abs "$PY")" VENV="$(abs "$VENV")"
  DEMO_DATA="$(abs "${DEMO_DATA:-}")"
  cd "$ROOT"
  DEMO_DATA="${DEMO_DATA:-demo_data}"
  local out="${OUT:-demo_output}" game="$DEMO_DATA/game" model="$MODEL"
  if [[ ! -f "$DEMO_DATA/match.mp4" || ! -f "$game/Labels-v2.json" ]]; then
    echo "== making the demo match in $DEMO_DATA" >&2
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m soccer_highlights.synthetic.video --demo --out "$DEMO_DATA" >&2
  fi
  if [[ -z "$model" && -f "$DEMO_DATA/model/demo_best.keras" ]]; then
    model="$DEMO_DATA/model/demo_best.keras"
  elif [[ -z "$model" ]]; then
    echo "== training the demo model (scripts/demo_train.sh, once)" >&2
    model="$(DEMO_DATA="$DEMO_DATA" VENV="$VENV" bash "$ROOT/scripts/demo_train.sh" | tail -n 1)"
    # the script prints it relative to the checkout, where the demo runs
    [[ -f "$model" ]] || die "scripts/demo_train.sh did not print a model path (got '$model')"
  fi
  demo_extraction
  echo "== inference on $DEMO_DATA/match.mp4 (its synthetic game's features reused; the demo model knows" \
    "synthetic events, not football; decoder threshold $DEMO_THRESHOLD for every class, the seed's is 0.5:" \
    "the small demo model is less confident)" >&2
  infer --model "$model" --video "$DEMO_DATA/match.mp4" \
    --features_video "$game/1_ResNET_TF2_PCA512.npy" --features_audio "$game/1_VGGish.npy" \
    --ground_truth "$game" --half 1 --threshold "$DEMO_THRESHOLD" --out "$out" "${settings[@]}"
}

# The path a real video takes, timed: the feature networks (ResNet-152 + PCA, VGGish) on a short generated clip.
# Real weights when they are in the Keras cache and a PCA is given (PCA=...), else random weights, said so.
demo_extraction() {
  local clip="$DEMO_DATA/clip.mp4" features="$DEMO_DATA/clip_features" models="${KERAS_HOME:-$HOME/.keras}/models"
  local shown="${KERAS_HOME:-~/.keras}/models"  # as the README shows it
  local weights=(--weights random) what="random weights (no pretrained ones here: ImageNet ResNet-152 and VGGish"
  what+=" go in $shown, with PCA=pca.npz; the timing is real, these features mean nothing)"
  if [[ -f "$models/resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5" && -f "$models/vggish_model.ckpt" \
    && -n "$PCA" ]]; then
    weights=(--weights imagenet --pca "$PCA") what="ImageNet ResNet-152, VGGish and $PCA"
  fi
  [[ -f "$clip" ]] || PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m soccer_highlights.synthetic.video \
    --duration "$DEMO_CLIP_SEC" --out "$clip" >&2
  echo "== feature extraction on a ${DEMO_CLIP_SEC} s clip ($clip), as for a real video: $what" >&2
  local start=$SECONDS
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m extract_features --video "$clip" --out "$features" "${weights[@]}" --overwrite --quiet \
    >&2 || exit $?
  echo "== $((SECONDS - start)) s for ${DEMO_CLIP_SEC} s of video ($((2 * DEMO_CLIP_SEC)) tokens, network" \
    "building and conversion included): $features/" >&2
}

if [[ -n "$LIVE" ]]; then
  run_live
elif ((${#inputs[@]} == 0)); then
  demo
else
  run_videos
fi
