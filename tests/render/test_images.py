"""Image files of rendered views: round trips through Pillow, atomic writes, bad requests."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from voxelflow.errors import RenderError
from voxelflow.render import encode_image, save_animation, save_image


@pytest.fixture
def gradient() -> np.ndarray:
    return (np.arange(24 * 40).reshape(24, 40) % 256).astype(np.uint8)


def test_png_8_bit_round_trip(tmp_path, gradient):
    path = save_image(gradient, tmp_path / "view.png")
    assert path == tmp_path / "view.png"
    with Image.open(path) as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), gradient)
    assert [p.name for p in tmp_path.iterdir()] == ["view.png"]  # no temporary left


def test_png_16_bit_round_trip(tmp_path):
    values = (np.arange(30 * 17, dtype=np.uint32).reshape(30, 17) * 127 % 65536).astype(np.uint16)
    values[0, 0], values[-1, -1] = 0, 65535
    path = save_image(values, tmp_path / "deep.png")
    with Image.open(path) as image:
        assert image.mode.startswith("I")
        np.testing.assert_array_equal(np.asarray(image).astype(np.uint16), values)


def test_float_display_values_take_bits(tmp_path):
    values = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    with Image.open(save_image(values, tmp_path / "f8.png", bits=8)) as image:
        np.testing.assert_array_equal(np.asarray(image), np.rint(values * 255).astype(np.uint8))
    with Image.open(save_image(values, tmp_path / "f16.png", bits=16)) as image:
        np.testing.assert_array_equal(
            np.asarray(image).astype(np.uint16), np.rint(values * 65535).astype(np.uint16)
        )


def test_jpeg(tmp_path, gradient):
    smooth = np.repeat(np.linspace(0, 255, 40), 24).reshape(40, 24).T.astype(np.uint8)
    for name in ("view.jpg", "view.JPEG"):
        path = save_image(smooth, tmp_path / name, quality=95)
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (40, 24)
            assert np.abs(np.asarray(image).astype(int) - smooth).max() <= 8
    small = save_image(gradient, tmp_path / "low.jpg", quality=5)
    assert small.stat().st_size < (tmp_path / "view.jpg").stat().st_size


def test_animations_round_trip(tmp_path, gradient):
    frames = np.stack([np.roll(gradient, 3 * k, axis=1) for k in range(5)])
    for name in ("turn.gif", "turn.png", "turn.apng"):
        path = save_animation(frames, tmp_path / name, fps=20)
        with Image.open(path) as image:
            assert image.n_frames == 5 and image.info.get("loop") == 0
            assert image.info.get("duration") == pytest.approx(50, abs=1)
            for k in range(5):
                image.seek(k)
                np.testing.assert_array_equal(np.asarray(image.convert("L")), frames[k])


def test_overwrite_is_atomic(tmp_path, gradient):
    path = tmp_path / "view.png"
    save_image(gradient, path)
    save_image(255 - gradient, path)
    with Image.open(path) as image:
        np.testing.assert_array_equal(np.asarray(image), 255 - gradient)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.png"]


def test_bad_requests(tmp_path, gradient):
    with pytest.raises(RenderError, match="path"):
        save_image(gradient, tmp_path / "view.tiff")
    with pytest.raises(RenderError, match="path"):
        save_image(gradient, tmp_path / "missing" / "view.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(RenderError, match="folder"):
        save_image(gradient, tmp_path / "folder.png")
    with pytest.raises(RenderError, match="path"):
        save_image(gradient, 42)
    with pytest.raises(RenderError, match="dtype|uint8"):
        save_image(gradient.astype(np.int16), tmp_path / "view.png")
    with pytest.raises(RenderError, match="2-D"):
        save_image(gradient[None], tmp_path / "view.png")
    with pytest.raises(RenderError, match="2-D"):
        save_image(np.zeros((0, 4), np.uint8), tmp_path / "view.png")
    with pytest.raises(RenderError, match="JPEG"):
        save_image(gradient.astype(np.uint16), tmp_path / "view.jpg")
    for quality in (0, 96, 50.5, True):
        with pytest.raises(RenderError, match="quality"):
            save_image(gradient, tmp_path / "view.jpg", quality=quality)
    with pytest.raises(RenderError, match="bits"):
        save_image(gradient, tmp_path / "view.png", bits=16)
    with pytest.raises(RenderError, match="bits"):
        save_image(gradient, tmp_path / "view.png", bits=12)
    with pytest.raises(RenderError, match="bits"):
        save_image(np.zeros((4, 4), np.float32), tmp_path / "view.png")
    with pytest.raises(RenderError, match=r"\[0, 1\]"):
        save_image(np.full((4, 4), 2.0), tmp_path / "view.png", bits=8)
    with pytest.raises(RenderError, match="frames"):
        save_animation(gradient, tmp_path / "turn.gif")
    with pytest.raises(RenderError, match="frames"):
        save_animation(np.stack([gradient] * 2).astype(np.uint16), tmp_path / "turn.gif")
    with pytest.raises(RenderError, match="path"):
        save_animation(np.stack([gradient] * 2), tmp_path / "turn.jpg")
    for fps in (0, -1, float("nan"), 1000, "fast"):
        with pytest.raises(RenderError, match="fps"):
            save_animation(np.stack([gradient] * 2), tmp_path / "turn.gif", fps=fps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (100, 3), (257, 511)])
def test_encode_png_decodes_to_the_same_pixels(dtype: type, shape: tuple[int, int]) -> None:
    """The service's own PNG writer (Up filter, ISA-L deflate), read back by Pillow."""
    top = np.iinfo(dtype).max
    pixels = np.random.default_rng(1).integers(0, top, shape, endpoint=True).astype(dtype)
    pixels[0, 0], pixels[-1, -1] = 0, top
    image = Image.open(io.BytesIO(encode_image(pixels, "PNG")))
    assert image.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(image).astype(np.int64), pixels.astype(np.int64))
