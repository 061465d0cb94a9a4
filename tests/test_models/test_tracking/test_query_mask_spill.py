import numpy as np
import pytest
import torch
from mmdet.structures.mask import encode_mask_results
from mmengine.structures import InstanceData

from rap_sam.models.tracking import QueryMaskSpill


def query_masks(seed, num=6, h=9, w=11):
    rng = np.random.default_rng(seed)
    masks = rng.random((num, h, w)) > .5
    return InstanceData(
        masks=encode_mask_results(masks),
        bboxes=torch.from_numpy(rng.random((num, 4))).float(),
        mask_scores=torch.from_numpy(rng.random(num)).float())


def test_chosen_queries_read_back_as_made():
    frames = [query_masks(s) for s in range(4)]
    with QueryMaskSpill() as spill:
        for frame in frames:
            spill.add(frame)
        assert len(spill) == 4
        for t in (2, 0, 3, 1):  # any order
            queries = torch.tensor([4, 1, 4, 0])
            got = spill.get(t, queries)
            want = frames[t]
            assert torch.equal(got.bboxes, want.bboxes)
            assert torch.equal(got.mask_scores, want.mask_scores)
            for q in range(6):
                if q in (0, 1, 4):
                    # same keys, order and bytes as pycocotools made them
                    assert list(got.masks[q].items()) == \
                        list(want.masks[q].items())
                else:
                    assert got.masks[q] is None
        # frames can be added after reading
        spill.add(query_masks(9))
        assert spill.get(4, torch.tensor([5])).masks[5] == \
            query_masks(9).masks[5]
    assert spill.file.closed


def test_masks_are_not_kept_in_memory():
    with QueryMaskSpill() as spill:
        spill.add(query_masks(0))
        rest, spans = spill.frames[0]
        assert 'masks' not in rest and spans.shape == (6, 4)
        assert spill.file.tell() == sum(
            len(m['counts']) for m in query_masks(0).masks)


def test_file_closed_on_error():
    with pytest.raises(RuntimeError):
        with QueryMaskSpill() as spill:
            spill.add(query_masks(0))
            raise RuntimeError('the model failed mid-video')
    assert spill.file.closed
