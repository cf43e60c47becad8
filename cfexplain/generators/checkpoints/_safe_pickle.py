"""Reading pickles that cannot run code.

Python's pickle format is a small program: it may import any global (a function or class) by name
and call it. Model pickles from NVlabs and the TensorFlow StyleGAN2 releases need only a handful of
data-building globals, plus NVIDIA's ``persistence`` hook, whose real implementation ``exec``\\ s
Python source stored in the file. :class:`RestrictedUnpickler` resolves a global only if it is on
an explicit allow-list, and every allowed name maps to a function of ours that checks its
arguments and builds plain data:

* NVIDIA's persistence reconstructor → :class:`PersistentObject`, keeping only the class name and
  the module state (the pickled ``module_src`` is dropped, never executed);
* ``dnnlib.tflib.network.Network`` → :class:`TFNetwork`, keeping the pickled state dict;
* nested tensor storages → ``torch.load(..., weights_only=True)``;
* tensors, numpy arrays and scalars, ``OrderedDict``/``EasyDict`` → checked rebuilders.

Anything else raises :class:`~cfexplain.errors.UnsafeCheckpointError` naming the global, before
anything is called.

Before any of that, the whole opcode stream is scanned once (:func:`scan_pickle`, linear in the
file's size) against :class:`PickleLimits`: a budget of opcodes, memo entries and mark nesting, and
every declared length must fit in the bytes that are left. A stream that is truncated, declares
more data than it holds, or exceeds a budget is refused before unpickling starts, so that loading
ends in bounded time and memory on any input.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import pickletools
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import torch

from ...errors import CorruptCheckpointError, UnsafeCheckpointError

__all__ = ["PersistentObject", "TFNetwork", "EasyDict", "PickleLimits", "RestrictedUnpickler", "safe_load_pickle",
           "scan_pickle"]


@dataclass(frozen=True)
class PickleLimits:
    """Budgets of :func:`scan_pickle`. The defaults are far above what model pickles use (the FFHQ
    1024² NVlabs pickle has about 10⁵ opcodes, 10⁴ memo entries and a nesting depth under 30).

    Attributes:
        max_opcodes: opcodes in the whole stream.
        max_memo: memo entries stored (``PUT``/``BINPUT``/``LONG_BINPUT``/``MEMOIZE``).
        max_depth: open ``MARK`` opcodes at any point.
    """

    max_opcodes: int = 5_000_000
    max_memo: int = 2_000_000
    max_depth: int = 10_000


# Opcodes that pop the stack down to the last MARK.
_POP_MARK = {"APPENDS", "SETITEMS", "TUPLE", "LIST", "DICT", "OBJ", "INST", "POP_MARK", "FROZENSET", "ADDITEMS"}
_MEMO = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}


def scan_pickle(data: bytes | IO[bytes], limits: PickleLimits = PickleLimits()) -> None:
    """Check a pickle's opcode stream without running it (see the module docstring).

    Args:
        data: the pickle, as bytes or as a binary stream positioned at its start; a stream is left
            wherever the scan stopped reading.
        limits: the budgets to enforce.

    Raises:
        CorruptCheckpointError: truncated or malformed stream, or a budget of ``limits`` exceeded.
    """
    opcodes = memo = depth = 0
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        for opcode, _arg, _position in pickletools.genops(stream):
            opcodes += 1
            name = opcode.name
            if name == "MARK":
                depth += 1
                if depth > limits.max_depth:
                    raise CorruptCheckpointError(f"the pickle nests deeper than {limits.max_depth} marks; refused")
            elif name in _POP_MARK:
                depth -= 1
                if depth < 0:
                    raise CorruptCheckpointError(f"the pickle's {name} has no MARK to pop to (damaged)")
            elif name in _MEMO:
                memo += 1
                if memo > limits.max_memo:
                    raise CorruptCheckpointError(f"the pickle stores more than {limits.max_memo} memo entries; refused")
            if opcodes > limits.max_opcodes:
                raise CorruptCheckpointError(f"the pickle has more than {limits.max_opcodes} opcodes; refused")
            if name == "STOP":
                return
    except CorruptCheckpointError:
        raise
    except (ValueError, EOFError, IndexError, OverflowError, MemoryError, UnicodeDecodeError) as exc:
        raise CorruptCheckpointError(f"the pickle is truncated or damaged ({type(exc).__name__}: {exc})") from exc
    raise CorruptCheckpointError("the pickle ends without a STOP opcode (truncated)")


class PersistentObject:
    """What cfexplain keeps of an NVlabs persistent-class instance: its class name and state.

    Attributes:
        class_name: the original class name, e.g. ``"Generator"`` or ``"SynthesisLayer"``.
        state: the pickled ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, attributes).
    """

    __slots__ = ("class_name", "state")

    def __init__(self, class_name: str, state: dict) -> None:
        self.class_name = class_name
        self.state = state

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r})"


class TFNetwork:
    """What cfexplain keeps of a pickled ``dnnlib.tflib.network.Network``: its state dict."""

    state: dict

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafeCheckpointError(
                f"a TensorFlow Network in the pickle has a state of type {type(state).__name__}, "
                "expected a dict"
            )
        self.state = state

    def __repr__(self) -> str:
        return f"TFNetwork({self.state.get('name')!r})"


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict."""


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafeCheckpointError(
            "an NVlabs persistent object in the pickle has unexpected metadata "
            f"(expected a dict with type 'class', found {type(meta).__name__})"
        )
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise UnsafeCheckpointError(
            "an NVlabs persistent object in the pickle lacks a class name or a state dict"
        )
    # meta["module_src"] holds Python source that NVIDIA's loader would exec: it is dropped here.
    return PersistentObject(class_name, state)


def _load_storage_from_bytes(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafeCheckpointError(f"a tensor storage blob has type {type(data).__name__}, expected bytes")
    try:
        return torch.load(io.BytesIO(bytes(data)), weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(f"a nested tensor storage was refused by torch.load(weights_only=True): {exc}") from exc
    except Exception as exc:
        raise CorruptCheckpointError(f"a nested tensor storage cannot be read: {exc}") from exc


def _check_no_hooks(backward_hooks: Any) -> None:
    if backward_hooks:
        raise UnsafeCheckpointError("a tensor in the pickle carries backward hooks (callables); refused")


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise UnsafeCheckpointError(f"a tensor is built on a {type(storage).__name__}, expected a torch storage")
    if not isinstance(storage_offset, int) or not all(isinstance(v, int) for v in (*size, *stride)):
        raise UnsafeCheckpointError("a tensor in the pickle has non-integer offset, size or stride")
    _check_no_hooks(backward_hooks)
    untyped = storage._untyped_storage if isinstance(storage, torch.TypedStorage) else storage
    dtype = storage.dtype if isinstance(storage, torch.TypedStorage) else torch.uint8
    if any(v < 0 for v in (storage_offset, *size, *stride)) or len(size) != len(stride):
        raise CorruptCheckpointError("a tensor in the pickle has a negative offset, size or stride, or a stride "
                                     "per dimension missing")
    elements = math.prod(size)
    available = untyped.nbytes() // max(1, dtype.itemsize)
    if elements > max(available, 1):
        # a saved tensor never has more elements than its storage; zero strides over a huge size
        # would make a tiny file claim an enormous tensor (and the network built from it)
        raise CorruptCheckpointError(f"a tensor in the pickle claims {elements} elements on a storage of {available}")
    tensor = torch.empty((0,), dtype=dtype)
    try:
        return tensor.set_(untyped, storage_offset, tuple(size), tuple(stride))
    except RuntimeError as exc:
        raise CorruptCheckpointError(f"a tensor in the pickle does not fit its storage: {exc}") from exc


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpointError(f"a parameter in the pickle wraps a {type(data).__name__}, expected a tensor")
    _check_no_hooks(backward_hooks)
    return data


NUMPY_KINDS = "biufc"
"""The numpy dtype kinds a model pickle may hold: bool, signed and unsigned integers, floats and
complex numbers (never datetime, object, void, strings or structured dtypes)."""


_KIND_NAMES = {"O": "object", "M": "datetime", "m": "timedelta", "V": "void or structured", "S": "bytes",
               "U": "string"}


class _DtypeSpec:
    """What the pickle's ``numpy.dtype(...)`` asks for, checked, standing in for the dtype until an
    array or scalar uses it: numpy's own ``dtype.__setstate__`` never sees the pickle's state
    (given a datetime dtype and another dtype's state, it crashes the process)."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(spec, str) or len(spec) > 8:
            raise UnsafeCheckpointError(f"the pickle asks for a numpy dtype from a {type(spec).__name__}; only "
                                        f"plain numeric type codes are allowed")
        try:
            dtype = np.dtype(spec)
        except TypeError as exc:
            raise CorruptCheckpointError(f"the pickle asks for an unknown numpy dtype {spec!r}") from exc
        if dtype.kind not in NUMPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            kind = _KIND_NAMES.get(dtype.kind, f"kind {dtype.kind!r}")
            raise UnsafeCheckpointError(f"the pickle asks for the numpy dtype {spec!r}, a {kind} dtype; only numeric "
                                        f"dtypes are allowed")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        """The dtype's pickled state: ``(version, byte order, subarray, names, fields, …)``; only the
        byte order of a plain numeric dtype is taken from it."""
        if not isinstance(state, tuple) or len(state) < 5 or state[1] not in ("<", ">", "|", "=") \
                or any(part is not None for part in state[2:5]):
            raise CorruptCheckpointError("a numpy dtype in the pickle has a damaged state")
        if state[1] in ("<", ">") and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])


def _dtype_of(value: Any) -> np.dtype:
    if not isinstance(value, _DtypeSpec):
        raise UnsafeCheckpointError(f"the pickle gives a numpy value the dtype {type(value).__name__}; only numeric "
                                    f"dtypes are allowed")
    return value.dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    dtype = _dtype_of(dtype)
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise CorruptCheckpointError("a numpy scalar in the pickle is not one value of its dtype")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0].copy()


class _PickledArray(np.ndarray):
    """A numpy array rebuilt from a pickle: its state is checked (dtype, shape, data length) before
    numpy sees it. Read it through ``np.asarray`` (a plain ``ndarray``)."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise CorruptCheckpointError("a numpy array in the pickle has a damaged state")
        version, shape, dtype, fortran, data = state
        dtype = _dtype_of(dtype)
        if not isinstance(shape, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                   for v in shape) or not isinstance(fortran, bool):
            raise CorruptCheckpointError("a numpy array in the pickle has a damaged shape")
        if not isinstance(data, (bytes, bytearray)) or len(data) != math.prod(shape) * dtype.itemsize:
            raise CorruptCheckpointError(f"a numpy array in the pickle of shape {shape} and dtype {dtype} does not "
                                         f"hold that many bytes")
        super().__setstate__((version, shape, dtype, fortran, data))


class _NdarrayName:
    """``numpy.ndarray`` as a pickle names it: only the subtype argument of ``_reconstruct``. It
    cannot be called (``numpy.ndarray(shape)`` would allocate whatever the pickle asks)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsafeCheckpointError("the pickle calls numpy.ndarray directly; refused")


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not _NdarrayName:
        raise UnsafeCheckpointError("the pickle rebuilds a numpy array subclass; only numpy.ndarray is allowed")
    return np.ndarray.__new__(_PickledArray, (0,), np.uint8)


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    return collections.OrderedDict(*args)


def _build_allow_list() -> dict[tuple[str, str], Callable[..., Any] | type]:
    allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.tflib.network", "Network"): TFNetwork,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("dnnlib", "EasyDict"): EasyDict,
        ("collections", "OrderedDict"): _ordered_dict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("numpy", "dtype"): _DtypeSpec,
        ("numpy", "ndarray"): _NdarrayName,
    }
    for numpy_core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(numpy_core, "scalar")] = _numpy_scalar
        allowed[(numpy_core, "_reconstruct")] = _numpy_reconstruct
    return allowed


ALLOWED_GLOBALS = _build_allow_list()
"""``(module, name)`` → the callable that stands in for it. Nothing else can be resolved."""


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only the globals in :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refused to load: the pickle asks for the global '{module}.{name}', which is not on "
                "cfexplain's allow-list of data-only globals (loading it could run arbitrary code). "
                "cfexplain reads NVlabs and TensorFlow StyleGAN2 pickles without running any code from "
                "them; if you trust this file, export its generator's state_dict with torch.save and "
                "load that instead."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            f"refused to load: the pickle uses a persistent id ({type(pid).__name__}), which plain "
            "model pickles do not"
        )


def safe_load_pickle(stream: IO[bytes], limits: PickleLimits = PickleLimits()) -> Any:
    """Scan (:func:`scan_pickle`), then unpickle ``stream`` with :class:`RestrictedUnpickler`.

    A seekable stream is scanned in place and rewound, so the file is never held in memory twice;
    any other stream is read into memory first.

    Raises:
        UnsafeCheckpointError: the pickle refers to a global outside the allow-list.
        CorruptCheckpointError: the data is truncated or malformed, or exceeds ``limits``.
    """
    if not stream.seekable():
        stream = io.BytesIO(stream.read())
    start = stream.tell()
    scan_pickle(stream, limits)
    stream.seek(start)
    try:
        return RestrictedUnpickler(stream).load()
    except (UnsafeCheckpointError, CorruptCheckpointError):
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, OverflowError, UnicodeDecodeError, SystemError, RuntimeError, RecursionError) as exc:
        raise CorruptCheckpointError(f"the pickle is truncated or damaged ({type(exc).__name__}: {exc})") from exc
