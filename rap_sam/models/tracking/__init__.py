from .clip_linker import ClipLinker
from .query_mask_spill import QueryMaskSpill

__all__ = ['ClipLinker', 'QueryMaskSpill']
