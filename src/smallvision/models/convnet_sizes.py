"""The book's small convnet's layer sizes and the arithmetic on them, without torch: the schema and the memory
check read them before any stage imports torch (`smallvision.models.convnet` builds the network from them)."""

FILTERS = (32, 64, 128, 128)
DENSE_UNITS = 512
MIN_IMAGE_SIZE = 46  # smallest input that survives 4 x (valid conv3x3 + pool2)


def _conv_output_size(image_size: int) -> int:
    """Spatial size after 4 x (Conv3x3 valid + MaxPool2), as Keras computes it (floor)."""
    size = image_size
    for _ in FILTERS:
        size = (size - 2) // 2
    return size


def flatten_size(image_size: int) -> int:
    """Inputs of the Dense layer after Flatten at `image_size` px: it grows with the square of the size."""
    return FILTERS[-1] * _conv_output_size(image_size) ** 2
