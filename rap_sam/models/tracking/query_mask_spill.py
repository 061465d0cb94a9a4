import tempfile
from typing import List

import numpy as np
import torch
from mmengine.structures import InstanceData


class QueryMaskSpill:
    """Every query's per-frame RLE masks on disk until a video's instances
    are chosen.

    A video's instances are chosen from its whole-video class scores, so
    each frame's masks of all queries (100 COCO RLEs) are made before it is
    known which will be output. Kept in memory they grow with the video's
    length (3.1 MB per 736 x 1280 frame with random weights); here each
    RLE's bytes go to an anonymous temporary file as soon as it is made and
    only the chosen queries' are read back, so memory holds the small
    fields (boxes, mask scores) and two numbers per mask. The file has no
    name (it is gone when closed, also on an error or a kill); use as a
    context manager.
    """

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.frames: List[tuple] = []

    def __enter__(self) -> 'QueryMaskSpill':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()
        self.frames = []

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, query_masks: InstanceData) -> None:
        """Keep one frame's :meth:`predict_query_masks` result; its RLEs'
        bytes go to the file."""
        rles = query_masks.masks
        spans = np.empty((len(rles), 4), np.int64)
        for q, rle in enumerate(rles):
            spans[q] = (self.file.tell(), len(rle['counts']), *rle['size'])
            self.file.write(rle['counts'])
        rest = InstanceData(metainfo=query_masks.metainfo)
        for key, value in query_masks.items():
            if key != 'masks':
                rest[key] = value
        self.frames.append((rest, spans))

    def get(self, index: int, queries: torch.Tensor) -> InstanceData:
        """Frame ``index``'s query masks as :meth:`add` got them, with the
        RLEs of ``queries`` only (``None`` for the others)."""
        rest, spans = self.frames[index]
        masks: list = [None] * len(spans)
        for q in sorted(set(queries.tolist())):
            offset, length, h, w = spans[q].tolist()
            self.file.seek(offset)
            masks[q] = dict(size=[h, w], counts=self.file.read(length))
        self.file.seek(0, 2)  # appends go on at the end
        query_masks = rest.clone()
        query_masks.masks = masks
        return query_masks

    def drop(self, index: int) -> None:
        """Forget frame ``index``'s small fields (its bytes stay on disk
        until the file is closed)."""
        self.frames[index] = None
