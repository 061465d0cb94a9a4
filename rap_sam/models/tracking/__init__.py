from .clip_linker import ClipLinker

__all__ = ['ClipLinker']
