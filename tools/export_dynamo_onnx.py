"""Write the test nets of ``tests/test_onnx.py`` as torch's dynamo exporter writes them.

``torch.onnx.export`` defaults to the ``torch.export``-based exporter since torch 2.9. That exporter
needs onnxscript, which cfexplain does not depend on, so the tests export with the TorchScript-based
one and read these committed files for the other. Rerun it (in an environment with onnxscript) when
the test nets change::

    pip install onnxscript && python tools/export_dynamo_onnx.py

It writes ``tests/fixtures/onnx/dynamo_<net>.onnx``, each with a dynamic batch.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "onnx"


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_onnx import NETS

    OUT.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=64)
    for name, (make, shape, *_rest) in NETS.items():
        if name == "residual_folded_batch_of_one":  # the same net as residual_bn for this exporter
            continue
        example = torch.randn(2, *shape[1:])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(make().eval(), (example,), dynamo=True, input_names=["x"], output_names=["y"],
                                        dynamic_shapes=({0: batch},))
        program.save(str(OUT / f"dynamo_{name}.onnx"))
        print(f"wrote {OUT / f'dynamo_{name}.onnx'}")


if __name__ == "__main__":
    main()
