"""The two lookup tables between V2 datatypes and numpy dtypes.

Every other module converts through these, so a datatype is added or fixed in one place.
BYTES maps to numpy object arrays holding `bytes`; its wire layout is handled by the codec.
"""

from __future__ import annotations

import numpy as np

V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

NUMPY_TO_V2: dict[np.dtype, str] = {dtype: name for name, dtype in V2_TO_NUMPY.items()}


def v2_datatype_of(array: np.ndarray) -> str:
    """The V2 datatype name for a numpy array; str/bytes arrays travel as BYTES."""
    if array.dtype.kind in ("S", "U", "O"):
        return "BYTES"
    try:
        return NUMPY_TO_V2[array.dtype]
    except KeyError:
        raise TypeError(f"numpy dtype {array.dtype} has no V2 datatype") from None
