"""`smfa reproduce`: the paper end to end from a preset (see pipeline.py for the steps and
docs/reproduce.md for the protocol)."""
