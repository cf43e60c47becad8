"""Generators: the protocol, the StyleGAN2 and StyleGAN3 networks, wrappers and checkpoint readers."""

from .base import Generator, NoiseMode, Seed
from .channel_styles import ChannelStyleGenerator, ChannelStyleLayer, ChannelStyleLayout
from .checkpoints import load_generator
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator, StyleLayer, StyleLayout
from .stylegan3 import StyleGAN3Config, StyleGAN3Generator
from .wrapped import ModuleGenerator

__all__ = [
    "ChannelStyleGenerator",
    "ChannelStyleLayer",
    "ChannelStyleLayout",
    "Generator",
    "ModuleGenerator",
    "NoiseMode",
    "Seed",
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "StyleGAN3Config",
    "StyleGAN3Generator",
    "StyleLayer",
    "StyleLayout",
    "load_generator",
]
