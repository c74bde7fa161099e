"""Column names the stages' tables share: where a split's labels are, and what a dSprites image
is rendered from. Kept apart so that training, which reads labels, does not depend on the
modules that make them."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: this module needs no pandas
    import pandas as pd

# What the dsprites image cache renders an image from (dareg.dsprites.render): the base sprite's
# row in the sprites file, the domain's style, the image's own seed, and the painting.
DSPRITES_RENDER = ["sprites", "row", "style", "seed", "painting", "sprites_sha256", "painting_sha256"]


def label_columns(table: pd.DataFrame) -> list[str]:
    """A table's label columns: `label`, or label_<factor> for each factor in order."""
    return [c for c in table.columns if c == "label" or c.startswith("label_")]
