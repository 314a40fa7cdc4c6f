"""smfa_methods: unlearning methods as pluggy plugins over one training loop.

For plugin authors: subclass `Method`, decorate `register_methods` with `hookimpl`."""

from .hookspecs import hookimpl
from .method import Job, Method, Result, TrainConfig

__all__ = ["Job", "Method", "Result", "TrainConfig", "hookimpl"]
