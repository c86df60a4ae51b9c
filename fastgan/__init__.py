"""fastgan: fast GAN training on fused C++/CUDA operators."""

__version__ = "0.1.0"
