"""smfa_methods: unlearning methods as pluggy plugins over one training loop.

For plugin authors: subclass `Method`, declare `options` (plain defaults or `Option`s),
decorate `register_methods` with `hookimpl`; raise `MethodError` for a user's mistake."""

from .errors import MethodError
from .hookspecs import hookimpl
from .job import Job, Result, TrainConfig
from .method import Method
from .options import Option

__all__ = ["Job", "Method", "MethodError", "Option", "Result", "TrainConfig", "hookimpl"]
