"""Segmentation engines behind one small interface (see base.py).

The names here are plain data, so settings and the command line can list them without importing torch.
"""

# `--engine` name -> the engine's module: load_default(device) for its default model, load(model, device) for
# --model. The registry imports the chosen one only (SAM never loads transformers).
ENGINES = {
    "sam": "ml_backend.engines.sam",
    "torchvision": "ml_backend.engines.torchvision_engine",
    "transformers": "ml_backend.engines.transformers_engine",
}
# The automatic output modes an engine may offer (`Engine.modes` is a subset).
MODES = ("semantic", "instance", "panoptic")
