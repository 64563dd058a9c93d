"""The base layer: what every other package may use and what imports nothing of the project.

- :mod:`core.errors`: the user-facing exceptions (:class:`~core.errors.PoppyError`, :class:`~core.errors.InputError`).
- :mod:`core.geodesy`: the one WGS84 :class:`pyproj.Geod` and the one geodesic-area function.
- :mod:`core.files`: writing a file aside and renaming it into place; SHA-256 of a file.

Layers, bottom to top: ``core`` <- ``datasets``, ``models`` <- ``detect`` <- ``training`` <- ``train.py``,
``infer.py``. A module imports only from its own layer or below (see docs/layers.md).
"""
