"""torch's dtype names: ``mr.tensor(x, dtype=mr.float64)``, ``t.dtype == mr.float32``.

They are NumPy dtypes, which is what a tensor's ``.dtype`` is; as in torch, ``float`` is
float32, ``double`` float64, ``long`` int64 and ``int`` int32.
"""

import numpy as np

float32 = float = np.dtype(np.float32)  # noqa: A001
float64 = double = np.dtype(np.float64)
int64 = long = np.dtype(np.int64)
int32 = int = np.dtype(np.int32)  # noqa: A001
int16 = np.dtype(np.int16)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
bool = np.dtype(np.bool_)  # noqa: A001
