"""Progress bars for long work: tqdm.auto (widgets in Jupyter, text elsewhere), silenced by TQDM_DISABLE.

tqdm's text bar reads TQDM_DISABLE, but its notebook bar passes disable=False itself and so ignores it
(tqdm 4.70): a notebook executed with TQDM_DISABLE=1 would still store one widget output per bar, and
such outputs render as nothing once the kernel is gone. With TQDM_DISABLE set, rwku_nb uses the text
bar, which honours it. (transformers' own bars, e.g. "Loading weights", follow HF_HUB_DISABLE_PROGRESS_BARS.)
"""
from __future__ import annotations

import os

if "TQDM_DISABLE" in os.environ:
    from tqdm.std import tqdm
else:
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
