"""Names of the fields a training batch carries besides fast-reid's own (``images``, ``targets``,
``camids``, ``img_paths``), shared by the datasets that write them and the models that read them."""

SECOND_VIEW = "images_2"        # a second random augmentation of the same images (MMT: (B, 3, H, W))
VIEW_TARGETS = "view_targets"   # labels of a model's extra clustering views (SSG's parts: (B, V-1), -1 = outlier)
PART_KEY = "acan_part"          # ACAN: which part of the batch a sample belongs to (B,)
TRIPLET_PART, CAMERA_PART = 0, 1  # ACAN's parts: P x K per-camera triplet groups / camera-balanced samples

__all__ = ["SECOND_VIEW", "VIEW_TARGETS", "PART_KEY", "TRIPLET_PART", "CAMERA_PART"]
