"""Fast operators for inference."""
from .modulated_deform_conv import (DCN_IMPLS, DeformConvImplError,
                                    check_deform_conv_impl, deform_im2col,
                                    modulated_deform_conv2d,
                                    modulated_deform_conv2d_torch,
                                    use_mmcv_kernel)
from .pixel_products import masked_pixel_sums, pixel_products

__all__ = [
    'DCN_IMPLS', 'DeformConvImplError', 'check_deform_conv_impl',
    'deform_im2col', 'modulated_deform_conv2d',
    'modulated_deform_conv2d_torch', 'use_mmcv_kernel', 'masked_pixel_sums',
    'pixel_products'
]
