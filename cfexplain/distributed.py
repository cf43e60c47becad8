"""Running ``learn_subspaces`` and ``audit`` across processes, with ``torch.distributed``.

Launch the same script once per process with ``torchrun`` (``--nproc-per-node N``), call
:func:`initialize` once (gloo on the CPU, NCCL for CUDA devices), then pass ``distributed=True``:

.. code-block:: python

    import cfexplain
    from cfexplain import distributed

    ranks = distributed.initialize(device="cuda")          # each process gets its own GPU
    generator = cfexplain.load_generator("ffhq.pkl", device=ranks.device("cuda"))
    ...
    subspaces = cfexplain.learn_subspaces(generator, semantics, distributed=True)  # on every rank
    result = cfexplain.audit(generator, classifier, subspaces, 10_000, distributed=True)
    if ranks.is_main:                                      # rank 0 holds the gathered result
        result.save("audit/")

Faces are shared out as contiguous blocks of face indices; since sampling is prefix-stable
(:meth:`~cfexplain.generators.Generator.sample` with ``start``), face ``i`` is the same face in
every process and in a single-process run, and the gathered result equals the single-process
one within floating-point tolerance. Only ``torch.distributed``'s collectives are used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from ._launch import launched_by_torchrun
from .errors import InputError

__all__ = ["Ranks", "SINGLE_PROCESS", "initialize", "launched_by_torchrun", "ranks_for"]

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of a run: its ``rank`` of ``world_size``.

    :data:`SINGLE_PROCESS` (rank 0 of 1) is the plain run; every method then works without any
    process group.
    """

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> "Ranks":
        """The ranks of the initialized default process group (:class:`InputError` without one)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise InputError("distributed=True needs an initialized torch.distributed process group: launch with "
                             "torchrun and call cfexplain.distributed.initialize() first")
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that holds gathered results."""
        return self.rank == 0

    def span(self, count: int, *, block: int = 1) -> range:
        """This rank's contiguous share of ``count`` indices, in whole blocks of ``block`` (so that
        batches fall as in a single-process run); earlier ranks take one block more where the
        blocks do not divide evenly, and ranks beyond the last block get an empty range."""
        blocks = -(-count // block)
        base, extra = divmod(blocks, self.world_size)
        first = self.rank * base + min(self.rank, extra)
        last = first + base + (1 if self.rank < extra else 0)
        return range(min(first * block, count), min(last * block, count))

    def check_shareable(self, count: int, what: str, *, block: int = 1) -> None:
        """:class:`InputError` unless every rank gets at least one block of ``block`` of ``count`` items."""
        if -(-count // block) < self.world_size:
            unit = f" (in blocks of {block})" if block > 1 else ""
            raise InputError(f"{count} {what}{unit} cannot be shared by {self.world_size} processes: each needs at "
                             f"least one{' block' if block > 1 else ''}; use fewer processes or more {what}")

    def spans(self, count: int, *, block: int = 1) -> list[range]:
        """Every rank's :meth:`span`, by rank."""
        return [Ranks(r, self.world_size).span(count, block=block) for r in range(self.world_size)]

    def all_gather(self, value: T) -> list[T]:
        """Every rank's ``value``, by rank, on every rank (any picklable object)."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def gather(self, value: T) -> list[T] | None:
        """Every rank's ``value``, by rank, on rank 0; ``None`` on the other ranks."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over the ranks of a CPU tensor, on every rank (added in rank order, so that
        every rank gets the same bits)."""
        if self.world_size == 1:
            return value
        parts = self.all_gather(value)
        total = parts[0].clone()
        for part in parts[1:]:
            total += part
        return total

    def device(self, device: torch.device | str | None) -> torch.device:
        """The device this rank should use for ``device``: a CUDA device without an index becomes
        this process's own (``LOCAL_RANK`` set by torchrun); anything else is returned as given."""
        resolved = torch.device(device if device is not None else "cpu")
        if resolved.type == "cuda" and resolved.index is None:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        return resolved


SINGLE_PROCESS = Ranks()
"""The plain single-process run."""


def ranks_for(distributed: bool) -> Ranks:
    """:meth:`Ranks.current` when ``distributed``, else :data:`SINGLE_PROCESS`."""
    return Ranks.current() if distributed else SINGLE_PROCESS


def initialize(*, device: torch.device | str | None = None, backend: str | None = None,
               timeout_minutes: float = 60.0) -> Ranks:
    """Join the run ``torchrun`` started (its environment variables say where): initialize the
    default process group once and return this process's :class:`Ranks`.

    Args:
        device: the device the models will run on; for CUDA, this process's GPU (``LOCAL_RANK``)
            becomes the current one, as NCCL's object collectives need.
        backend: ``"gloo"`` or ``"nccl"``; default NCCL for CUDA devices, gloo otherwise.
        timeout_minutes: how long a collective waits for the other ranks (a rank that learns or
            audits a large shard may arrive much later than the others).

    Without torchrun's variables (a plain ``python`` run) nothing is initialized and
    :data:`SINGLE_PROCESS` is returned, so one script serves both.
    """
    import datetime

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Ranks.current()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return SINGLE_PROCESS
    if not dist.is_available():
        raise InputError("this torch build has no torch.distributed")
    resolved = torch.device(device if device is not None else "cpu")
    backend = backend or ("nccl" if resolved.type == "cuda" else "gloo")
    if backend not in ("gloo", "nccl"):
        raise InputError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if resolved.type == "cuda":
        torch.cuda.set_device(SINGLE_PROCESS.device("cuda") if resolved.index is None else resolved)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return Ranks.current()
