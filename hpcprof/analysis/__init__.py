"""What the measurements mean: cross-machine predictions, rooflines, bits needed, communication bounds and measured traffic."""
