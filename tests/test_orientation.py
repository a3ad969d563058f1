"""Where the patient is on a displayed slice (kdmed.orientation, kdmed.display): the letters at the edges of
the view and the slice's position in mm, from synthetic affines, checked against the pixels themselves."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from kdmed.data.arrays import take_slice
from kdmed.display import display_slice, slice_mm, view_orientation, view_steps
from kdmed.inference import ViewGeometry
from kdmed.io.study import Study, StudyMetadata
from kdmed.orientation import EdgeLetters, direction_letters, draw_edge_letters, edge_letters, slice_position

RAS_2MM = np.diag([1.0, 1.0, 2.0, 1.0])


def volume_study(array: np.ndarray, affine: np.ndarray = RAS_2MM) -> Study:
    meta = StudyMetadata(source_kind="nifti", orientation=("R", "A", "S"))
    return Study(array=array, affine=affine, spacing=(1.0, 1.0, 2.0), metadata=meta)


def shown_whole(study: Study, axis: int, index: int) -> SimpleNamespace:
    """A scored result that shows slice `index` along `axis` whole (its crop box is the whole view)."""
    rows, columns = take_slice(study.array[None], axis, index)[0].shape
    return SimpleNamespace(
        geometry=ViewGeometry(axis, (0, rows, 0, columns), (rows, columns)), slice_indices=[index]
    )


@pytest.mark.parametrize(
    ("axis", "expected"),
    [
        (2, EdgeLetters(left="L", right="R", top="A", bottom="P")),  # axial
        (1, EdgeLetters(left="L", right="R", top="S", bottom="I")),  # coronal
        (0, EdgeLetters(left="P", right="A", top="S", bottom="I")),  # sagittal
    ],
)
def test_the_letters_name_the_side_of_the_patient_the_pixels_show(axis, expected):
    """A bright voxel on the patient's right, front and top lands on the edges the letters name R, A, S."""
    array = np.zeros((9, 10, 11), np.float32)
    array[8, 9, 10] = 1.0  # the largest x, y and z: right, anterior, superior in RAS
    study = volume_study(array)
    result = shown_whole(study, axis, array.shape[axis] - 1)
    letters = view_orientation(study, result)
    assert letters == expected
    row, column = np.argwhere(display_slice(study, result, 0) == 1.0)[0]
    rows, columns = display_slice(study, result, 0).shape
    sides = {letters.left: column == 0, letters.right: column == columns - 1,
             letters.top: row == 0, letters.bottom: row == rows - 1}  # fmt: skip
    assert [letter for letter, here in sides.items() if here] == [x for x in "RAS" if x in sides]


def test_the_letters_follow_the_affine_not_the_array_order():
    """A volume stored with its first axis running anterior and its second to the patient's left."""
    affine = np.array([[0.0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]])
    right, down = view_steps(2)
    assert edge_letters(affine, right, down) == EdgeLetters(left="P", right="A", top="L", bottom="R")
    tilted = np.eye(4)
    angle = np.deg2rad(30)
    tilted[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    assert edge_letters(tilted, right, down) == EdgeLetters(left="LP", right="RA", top="AL", bottom="PR")
    assert direction_letters([0.0, 0.0, -5.0]) == "I"
    with pytest.raises(ValueError, match="non-zero 3-vector"):
        direction_letters([0.0, 0.0, 0.0])


def test_the_slice_position_is_its_world_coordinate_in_mm():
    affine = RAS_2MM.copy()
    affine[:3, 3] = [-20.0, -30.0, 12.5]
    assert slice_position(affine, 2, 0, (40, 40, 12)) == ("z", 12.5)
    assert slice_position(affine, 2, 5, (40, 40, 12)) == ("z", 22.5)
    assert slice_position(affine, 0, 3, (40, 40, 12)) == ("x", -17.0)
    with pytest.raises(ValueError, match="outside a volume of shape"):
        slice_position(affine, 2, 12, (40, 40, 12))
    study = volume_study(np.zeros((40, 40, 12), np.float32), affine)
    assert slice_mm(study, shown_whole(study, 2, 5), 0) == "z = 22.5 mm"


def test_a_2d_image_has_no_orientation_and_no_position():
    image = Study(array=np.zeros((20, 30), np.float32), affine=np.eye(4), spacing=(1.0, 1.0),
                  metadata=StudyMetadata(source_kind="image"))  # fmt: skip
    result = SimpleNamespace(geometry=None, slice_indices=[0])
    assert view_orientation(image, result) is None and slice_mm(image, result, 0) is None


def test_the_letters_are_drawn_at_the_middle_of_each_edge_and_small_slices_are_enlarged():
    grey = np.full((40, 60, 3), 90, np.uint8)
    drawn = draw_edge_letters(grey, EdgeLetters("L", "R", "A", "P"), min_side=480)
    assert drawn.shape == (480, 720, 3)  # enlarged 12 times, whole pixels
    white = (drawn == 255).all(axis=-1)
    dark = (drawn < 60).all(axis=-1)  # the outline
    h, w = white.shape
    bands = {
        "left": white[h // 3 : 2 * h // 3, : w // 8],
        "right": white[h // 3 : 2 * h // 3, -w // 8 :],
        "top": white[: h // 8, w // 3 : 2 * w // 3],
        "bottom": white[-h // 8 :, w // 3 : 2 * w // 3],
    }
    assert all(band.any() for band in bands.values()), {k: int(b.sum()) for k, b in bands.items()}
    assert not white[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].any()  # the slice itself is untouched
    assert dark.any() and not white[: h // 8, : w // 8].any()  # outlined; the corners stay free
    big = draw_edge_letters(np.zeros((600, 500, 3), np.uint8), EdgeLetters("L", "R", "A", "P"))
    assert big.shape == (600, 500, 3)
