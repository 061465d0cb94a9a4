"""Fast operators for inference."""
from .modulated_deform_conv import (deform_im2col, get_deform_conv_impl,
                                    modulated_deform_conv2d,
                                    modulated_deform_conv2d_torch,
                                    set_deform_conv_impl, use_mmcv_kernel)
from .pixel_products import masked_pixel_sums, pixel_products

__all__ = [
    'deform_im2col', 'get_deform_conv_impl', 'modulated_deform_conv2d',
    'modulated_deform_conv2d_torch', 'set_deform_conv_impl', 'use_mmcv_kernel',
    'masked_pixel_sums', 'pixel_products'
]
