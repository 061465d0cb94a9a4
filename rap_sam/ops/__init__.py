"""Fast operators for inference."""
from .modulated_deform_conv import (deform_im2col, get_deform_conv_impl,
                                    modulated_deform_conv2d,
                                    modulated_deform_conv2d_torch,
                                    set_deform_conv_impl, use_mmcv_kernel)

__all__ = [
    'deform_im2col', 'get_deform_conv_impl', 'modulated_deform_conv2d',
    'modulated_deform_conv2d_torch', 'set_deform_conv_impl', 'use_mmcv_kernel'
]
