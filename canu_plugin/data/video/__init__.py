"""Video (tracklet) re-ID data: datasets registered in fast-reid's DATASET_REGISTRY on import
(MARS, DukeMTMCVideoReID, DukeMTMCSITracklet, SynthVidA, SynthVidB), the synthetic tracklet
generator, frame sampling and clip datasets."""
from canu_plugin.data.video import duke, mars  # noqa: F401  (register the datasets)
from canu_plugin.data.video.base import (VIDEO_PROTOCOLS, VideoReidDataset, is_tracklet_items, is_video_dataset,
                                        queries_in_gallery, uses_video)

__all__ = ["VIDEO_PROTOCOLS", "VideoReidDataset", "is_tracklet_items", "is_video_dataset", "queries_in_gallery",
           "uses_video"]
