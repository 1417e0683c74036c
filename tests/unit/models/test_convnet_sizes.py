"""The small convnet's sizes without torch: the Dense layer's inputs and the smallest image the network takes."""

from smallvision.models import convnet_sizes
from smallvision.models.convnet_sizes import MIN_IMAGE_SIZE, flatten_size


def test_the_dense_layer_sees_the_books_flatten_size():
    assert flatten_size(150) == 128 * 7 * 7  # the book's summary: Flatten (None, 6272) at 150 px


def test_the_smallest_image_is_the_first_size_that_leaves_one_position():
    sizes = convnet_sizes._conv_output_size
    assert sizes(MIN_IMAGE_SIZE) == 1 and sizes(MIN_IMAGE_SIZE - 1) == 0
    assert flatten_size(MIN_IMAGE_SIZE) == 128


def test_the_sizes_load_without_torch():
    import subprocess
    import sys

    probe = "import sys, smallvision.models.convnet_sizes; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"
