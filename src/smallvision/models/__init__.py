"""Networks of the study: the book's small convnet, pretrained timm backbones with offline weight sources, dense heads."""
