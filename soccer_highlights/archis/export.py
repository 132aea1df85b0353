"""Re-save a model file with NetVLAD's projection in float16 (about half the size), its weights aligned so that
`archis.load_model` maps them in place (`--float32`: the same file, only aligned).

    python -m soccer_highlights.archis.export M.keras M_half.keras

The projection (`hidden_weights`, [K*D, 512]) is ~99 % of a VLAD-512 file; it is stored rounded to float16
and cast back to float32 on load, so the model still computes in its own dtype. The file loads with plain
`keras.models.load_model` too. bench/bench_startup.py measures the size, load time and score change.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from soccer_highlights.common.atomic import atomic_path
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.modelfile import align_weights


def export_model(src: str | os.PathLike, dst: str | os.PathLike, *, half: bool = True) -> Path:
    """Load `src` and save it to `dst` (atomically), the NetVLAD projection as float16 when `half`."""
    import contextlib

    from soccer_highlights.archis.model import load_model  # deferred: loads TensorFlow (start-up)
    from soccer_highlights.archis.pooling import half_precision_projection  # deferred: loads TensorFlow (start-up)

    dst = Path(dst)
    if dst.suffix != ".keras":
        raise UserError(f"{dst}: the output must be a .keras file")
    model = load_model(src)
    with atomic_path(dst) as tmp, half_precision_projection() if half else contextlib.nullcontext():
        model.save(tmp)
        align_weights(tmp)  # large datasets on 4096-byte boundaries: loading maps them in place
    return dst


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a .keras model")
    p.add_argument("out", help="the exported .keras file")
    p.add_argument("--float32", action="store_true", help="keep the projection in float32 (a plain re-save)")
    args = p.parse_args(argv)
    out = export_model(args.model, args.out, half=not args.float32)
    print(f"{out}: {out.stat().st_size / 1e6:.0f} MB (was {Path(args.model).stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    run_cli(main)
