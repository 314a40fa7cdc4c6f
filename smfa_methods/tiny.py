"""The old import path of `smfa_methods.testing.tiny`: the very same module object."""

import sys

from .testing import tiny as _tiny

sys.modules[__name__] = _tiny
