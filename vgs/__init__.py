"""vgs: joint speech-image representation learning, reproduced as a DVC pipeline."""

__version__ = "0.1.0"
