"""The report's sections, one module per study (`<study>.py`, placed on the page by the study's
registry entry) and `run.py`, the run's own overview."""
