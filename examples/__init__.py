"""Examples of bringing your own network to modescape (`--arch examples.tiny_factory:build`)."""
