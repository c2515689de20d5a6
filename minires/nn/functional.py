"""``minires.nn.functional`` is `minires.functional` (PyTorch users type ``nn.functional``)."""

from minires.functional import *  # noqa: F403
from minires.functional import __all__  # noqa: F401
