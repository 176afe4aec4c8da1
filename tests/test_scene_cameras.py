"""Camera models: projection/unprojection round trips for all eleven COLMAP models, rescaling."""
import numpy as np
import pytest

from nerf_app.data.cameras import MODELS_BY_NAME, Camera

# Real-looking parameters for each model (wide-angle lenses for the fisheyes, phone-like distortion
# for the perspective ones), on a 1000 x 800 image.
REALISTIC = {
    "SIMPLE_PINHOLE": [1000, 500, 400],
    "PINHOLE": [1000, 1010, 500, 400],
    "SIMPLE_RADIAL": [1000, 500, 400, -0.12],
    "RADIAL": [1000, 500, 400, -0.12, 0.03],
    "OPENCV": [1000, 1010, 500, 400, -0.2, 0.05, 0.001, -0.0005],
    "OPENCV_FISHEYE": [400, 402, 500, 400, 0.05, -0.01, 0.002, -0.0005],
    "FULL_OPENCV": [1000, 1010, 500, 400, -0.2, 0.05, 0.001, -0.0005, 0.01, 0.02, 0.003, 0.001],
    "FOV": [600, 605, 500, 400, 0.9],
    "SIMPLE_RADIAL_FISHEYE": [400, 500, 400, 0.03],
    "RADIAL_FISHEYE": [400, 500, 400, 0.03, -0.005],
    "THIN_PRISM_FISHEYE": [400, 402, 500, 400, 0.05, -0.01, 0.001, -0.0005, 0.002, -0.0005, 0.0008, -0.0006],
}


def test_all_eleven_models_are_covered():
    assert sorted(REALISTIC) == sorted(MODELS_BY_NAME) and len(MODELS_BY_NAME) == 11


def _points_in_view(cam, n, rng):
    """Random 3D points whose projections land inside the image (at random depths)."""
    pix = np.stack([rng.uniform(0, cam.width, n), rng.uniform(0, cam.height, n)], -1)
    d = cam.unproject(pix)
    return d * rng.uniform(0.1, 50.0, (n, 1))


@pytest.mark.parametrize("model", sorted(REALISTIC))
def test_unproject_project_round_trip(model):
    rng = np.random.default_rng(1)
    cam = Camera(model, 1000, 800, REALISTIC[model])
    # unproject(project(p)) gives p's direction to 1e-6 relative (we reach ~1e-12)
    pts = _points_in_view(cam, 5000, rng)
    dirs = cam.unproject(cam.project(pts))
    want = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    assert np.all(np.isfinite(dirs))
    assert np.max(np.linalg.norm(dirs - want, axis=1)) <= 1e-6
    # project(unproject(x)) returns the pixel to 1e-6 px: the iterative undistortion converged
    pix = np.stack([rng.uniform(0, 1000, 5000), rng.uniform(0, 800, 5000)], -1)
    assert np.max(np.abs(cam.project(cam.unproject(pix)) - pix)) <= 1e-6


def test_unproject_gives_unit_vectors_and_pixel_centre_convention():
    cam = Camera("PINHOLE", 4, 2, [10, 10, 2, 1])
    # the principal point (2, 1) is the corner shared by the four central pixels: pixel (1, 0)'s
    # centre is at (1.5, 0.5), half a pixel left of and above it
    d = cam.unproject(np.array([[2.0, 1.0], [1.5, 0.5]]))
    assert np.allclose(d[0], [0, 0, 1])
    assert np.allclose(d[1] / d[1, 2], [-0.05, -0.05, 1])
    assert np.allclose(np.linalg.norm(d, axis=1), 1)


def test_fisheye_sees_beyond_90_degrees():
    cam = Camera("OPENCV_FISHEYE", 1000, 1000, [200, 200, 500, 500, 0, 0, 0, 0])
    p = np.array([[1.0, 0.0, -0.2]])  # behind the image plane, inside a 180+ degree fisheye
    pix = cam.project(p)
    assert np.all(np.isfinite(pix))
    assert np.allclose(cam.unproject(pix), p / np.linalg.norm(p))


def test_perspective_marks_points_behind_as_nan():
    cam = Camera("OPENCV", 100, 100, REALISTIC["OPENCV"][:8])
    assert np.all(np.isnan(cam.project(np.array([[0.1, 0.2, -1.0]]))))


@pytest.mark.parametrize("model", sorted(REALISTIC))
def test_scaled_camera_matches_scaled_pixels(model):
    rng = np.random.default_rng(2)
    cam = Camera(model, 1000, 800, REALISTIC[model])
    small = cam.scaled(333, 267)  # odd sizes: x and y scale differently
    pts = _points_in_view(cam, 200, rng)
    expect = cam.project(pts) * np.array([333 / 1000, 267 / 800])
    assert np.allclose(small.project(pts), expect, atol=1e-9)


def test_bad_parameter_count_is_rejected():
    with pytest.raises(ValueError, match="takes 4 parameters"):
        Camera("SIMPLE_RADIAL", 10, 10, [1, 2, 3])
