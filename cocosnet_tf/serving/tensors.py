"""numpy arrays to and from TensorFlow's TensorProto, the values of TF-Serving's gRPC API.

Only the two types the model's signatures use: DT_FLOAT (float images and maps) and
DT_STRING (encoded images). A tensor's declared shape must hold exactly as many values as
it carries (packed in tensor_content, little-endian, or one float_val/string_val each),
so no array is ever larger than the message it came in.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from cocosnet_tf.serving.api import RequestError

FLOAT = np.dtype("<f4")


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d)
                                                   for d in array.shape])
    if array.dtype == object:
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape,
                                      string_val=[bytes(v) for v in array.reshape(-1)])
    if array.dtype.kind != "f":
        raise TypeError(f"{array.dtype} arrays do not go into a TensorProto here (float or bytes only)")
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape,
                                  tensor_content=np.ascontiguousarray(array, FLOAT).tobytes())


def to_array(name: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The array a TensorProto holds; RequestError naming `name` when it is malformed."""
    if proto.tensor_shape.unknown_rank:
        raise RequestError(f"{name}: tensor_shape: unknown rank; give every dimension")
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise RequestError(f"{name}: tensor_shape {shape}: dimensions must be known (>= 0)")
    count = math.prod(shape)
    if proto.dtype == types_pb2.DT_FLOAT:
        if proto.tensor_content:
            if len(proto.tensor_content) != count * FLOAT.itemsize:
                raise RequestError(f"{name}: tensor_content holds {len(proto.tensor_content)} bytes; shape {shape} "
                                   f"of DT_FLOAT needs {count * FLOAT.itemsize}")
            values = np.frombuffer(proto.tensor_content, FLOAT)
        else:
            if len(proto.float_val) != count:
                raise RequestError(f"{name}: {len(proto.float_val)} float_val values; shape {shape} needs {count}")
            values = np.asarray(proto.float_val, np.float32)
        return values.astype(np.float32).reshape(shape)
    if proto.dtype == types_pb2.DT_STRING:
        if len(proto.string_val) != count:
            raise RequestError(f"{name}: {len(proto.string_val)} string_val values; shape {shape} needs {count}")
        array = np.empty(count, dtype=object)
        array[:] = list(proto.string_val)
        return array.reshape(shape)
    known = proto.dtype in types_pb2.DataType.values()
    raise RequestError(f"{name}: dtype {types_pb2.DataType.Name(proto.dtype) if known else proto.dtype}; expected "
                       "DT_FLOAT (DT_STRING for encoded images)")
