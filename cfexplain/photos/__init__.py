"""Explain the user's own photos: find and align their faces, invert them into the generator's
latent space, and check that the classifier decides on each reconstruction as on the photo.

* :func:`align_faces` (BlazeFace detection, FaceMesh landmarks, a :class:`Framing`) → :class:`AlignedFaces`;
* :func:`invert` → :class:`InversionResult` (codes, reconstructions, PSNR, loss terms);
* :func:`check_faithfulness` → :class:`PhotoFaces` (the gate: decision on photo and reconstruction);
* :func:`photo_codes`: all three, for the explainer's codes; :class:`Photos`: photos as an audit's ``faces``.

docs/photos.md is the tutorial.
"""

from .alignment import AlignedFaces, FFHQFraming, Framing, TemplateFraming, align_faces, default_framing
from .detection import BLAZEFACE_KEYPOINTS, BlazeFaceDetector, FaceDetection, photo_landmarks, square_crop
from .faithfulness import PhotoFaces, check_faithfulness
from .inversion import InversionLoss, InversionResult, invert, psnr
from .io import PHOTO_SUFFIXES, Photo, load_photos, pixels_of
from .pipeline import Photos, photo_codes

__all__ = [
    "AlignedFaces", "BLAZEFACE_KEYPOINTS", "BlazeFaceDetector", "FFHQFraming", "FaceDetection", "Framing",
    "InversionLoss", "InversionResult", "PHOTO_SUFFIXES", "Photo", "PhotoFaces", "Photos", "TemplateFraming", "align_faces",
    "check_faithfulness", "default_framing", "invert", "load_photos", "photo_codes", "photo_landmarks", "pixels_of", "psnr",
    "square_crop",
]
