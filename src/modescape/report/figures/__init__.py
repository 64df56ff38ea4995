"""The report's figures: pure functions of arrays returning matplotlib figures (`analysis.py`,
with the shared styles and rendering; `landscape.py`; `studies.py`: subspace and shift) and the
numbers behind each figure (`data.py`: its CSV and interactive chart)."""
