"""Small shared helpers: user-facing errors, atomic writes, ffmpeg."""
