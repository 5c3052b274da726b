"""Reports of a run or of stored baselines: the document (``document.py``, versioned by
``report-schema.json``) and its renderings (``markdown.py``, ``html.py``, JSON in ``render.py``), the
study's comparison (``study.py``), the terminal matrix (``terminal.py``), the controller's side of a run
(``run.py``: writes baselines, prints the summary) and reports from stored baselines (``stored.py``)."""
