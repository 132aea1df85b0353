"""From per-token class scores to highlights: spotting, metrics, decoder, reel, plots."""
