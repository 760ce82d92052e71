"""Two augmented views per training image (MMT: net 1 and teacher 1 see one, net 2 and teacher 2
the other)."""
from fastreid.data.common import CommDataset
from fastreid.data.data_utils import read_image

SECOND_VIEW = "images_2"


class TwoViewDataset(CommDataset):
    """fast-reid's ``CommDataset`` whose items also carry ``"images_2"``: a second, independent
    draw of the (random) training transforms on the same image. fast-reid's collate stacks it like
    ``"images"``: a batch holds ``images`` and ``images_2``, both (B, 3, H, W)."""

    def __getitem__(self, index):
        item = super().__getitem__(index)
        img = read_image(item["img_paths"])
        item[SECOND_VIEW] = self.transform(img) if self.transform is not None else img
        return item


__all__ = ["TwoViewDataset", "SECOND_VIEW"]
