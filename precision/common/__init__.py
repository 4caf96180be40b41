"""Small utilities shared by precision, training and hpcprof.

``precision`` is the base package both others already depend on, so the helpers they have in
common (a name registry, atomic file writes, small parsers and loaders) live here.
"""
