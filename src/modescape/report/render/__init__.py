"""Rendering the report's page: the HTML page (`page.py`) and its interactive charts
(`interactive.py`: inline SVG and a few lines of script)."""
