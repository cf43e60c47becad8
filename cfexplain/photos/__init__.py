"""Explain the user's own photos: find and align their faces, invert them into the generator's
latent space, and check that the classifier decides on each reconstruction as on the photo.

* :func:`align_faces` (BlazeFace detection, FaceMesh landmarks, a :class:`Framing`) → :class:`AlignedFaces`;
* :func:`invert` → :class:`InversionResult` (codes, reconstructions, PSNR, loss terms);
* :func:`check_faithfulness` → :class:`PhotoFaces` (the gate: decision on photo and reconstruction);
* :func:`photo_codes`: all three, for the explainer's codes; :class:`Photos`: photos as an audit's ``faces``.

docs/photos.md is the tutorial.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__ = [
    "AlignedFaces", "BLAZEFACE_KEYPOINTS", "BlazeFaceDetector", "FFHQFraming", "FaceDetection", "Framing",
    "InversionLoss", "InversionResult", "PHOTO_SUFFIXES", "Photo", "PhotoFaces", "Photos", "TemplateFraming", "align_faces",
    "check_faithfulness", "default_framing", "invert", "load_photos", "photo_codes", "photo_landmarks", "pixels_of", "psnr",
    "square_crop",
]

__getattr__, __dir__ = lazy_attributes(__name__, {
    "AlignedFaces": ".alignment",
    "FFHQFraming": ".alignment",
    "Framing": ".alignment",
    "TemplateFraming": ".alignment",
    "align_faces": ".alignment",
    "default_framing": ".alignment",
    "BLAZEFACE_KEYPOINTS": ".detection",
    "BlazeFaceDetector": ".detection",
    "FaceDetection": ".detection",
    "photo_landmarks": ".detection",
    "square_crop": ".detection",
    "PhotoFaces": ".faithfulness",
    "check_faithfulness": ".faithfulness",
    "InversionLoss": ".inversion",
    "InversionResult": ".inversion",
    "invert": ".inversion",
    "psnr": ".inversion",
    "PHOTO_SUFFIXES": ".io",
    "Photo": ".io",
    "load_photos": ".io",
    "pixels_of": ".io",
    "Photos": ".pipeline",
    "photo_codes": ".pipeline",
})
