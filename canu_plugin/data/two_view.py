"""Two augmented views per training image (MMT: net 1 and teacher 1 see one, net 2 and teacher 2
the other)."""
from fastreid.data.common import CommDataset

SECOND_VIEW = "images_2"


class _KeepInput:
    """A transform that remembers its last input, so that a second draw needs no second read."""

    def __init__(self, transform):
        self.transform = transform
        self.last_input = None

    def __call__(self, img):
        self.last_input = img
        return self.transform(img)


class TwoViewDataset(CommDataset):
    """fast-reid's ``CommDataset`` whose items also carry ``"images_2"``: a second, independent
    draw of the (random) training transforms on the same image, read from disk once. fast-reid's
    collate stacks it like ``"images"``: a batch holds ``images`` and ``images_2``, both (B, 3, H, W)."""

    def __init__(self, img_items, transform=None, relabel=True):
        super().__init__(img_items, _KeepInput(transform) if transform is not None else None, relabel)

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if self.transform is None:
            item[SECOND_VIEW] = item["images"]
        else:
            item[SECOND_VIEW] = self.transform.transform(self.transform.last_input)
        return item


__all__ = ["TwoViewDataset", "SECOND_VIEW"]
