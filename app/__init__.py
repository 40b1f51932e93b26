"""U-Net segmentation application on MONAI: 2D EM, 3D CT and 3D MRI bundles."""

__version__ = "0.1.0"
