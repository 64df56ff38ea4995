"""modescape: why deep ensembles work, measured."""

__version__ = "0.1.0"
