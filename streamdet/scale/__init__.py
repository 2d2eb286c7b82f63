"""Scaling out: ``streamdet batch`` (archives, in-process or on Ray Data) and ``streamdet serve --ray`` (Ray Serve).

The engine-independent part is here and needs nothing beyond the runtime: :mod:`.inputs` (what the inputs are),
:mod:`.runtime` (one file in, its events and its status row out: the per-file logic every engine runs),
:mod:`.parts` (the output folder's layout, written the same way by every engine), :mod:`.progress` and
:mod:`.local` (the in-process engine). Ray is imported only by :mod:`.cluster`, :mod:`.ray_batch` and
:mod:`.ray_serve`, which need the ``ray`` extra (``pip install "streamdet[ray]"``).
"""
