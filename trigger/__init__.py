"""trigger: compile quantization-aware neural networks into verified Level-1 trigger firmware."""

__version__ = "0.1.0"
