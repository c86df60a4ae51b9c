"""Rebuilds fastgan/data/default_photos/ from the photographs that the scikit-image and
scikit-learn wheels ship (see SOURCES.md there for each photo's origin and licence).

Run once by a maintainer; the result is committed, so users need neither package.
"""
import os
from pathlib import Path

import numpy as np
from PIL import Image

DEST = Path(__file__).resolve().parent.parent / "fastgan" / "data" / "default_photos"
LONG_SIDE = 512


def _skimage(name):
    import skimage.data
    return getattr(skimage.data, name)()


def _sklearn(name):
    import sklearn.datasets
    return sklearn.datasets.load_sample_image(name)


PHOTOS = {
    "astronaut": lambda: _skimage("astronaut"),
    "chelsea": lambda: _skimage("chelsea"),
    "coffee": lambda: _skimage("coffee"),
    "rocket": lambda: _skimage("rocket"),
    "retina": lambda: _skimage("retina"),
    "hubble_deep_field": lambda: _skimage("hubble_deep_field"),
    "immunohistochemistry": lambda: _skimage("immunohistochemistry"),
    "china": lambda: _sklearn("china.jpg"),
    "flower": lambda: _sklearn("flower.jpg"),
}


def main():
    DEST.mkdir(parents=True, exist_ok=True)
    for name, load in PHOTOS.items():
        image = Image.fromarray(np.asarray(load())[..., :3])
        scale = LONG_SIDE / max(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        out = DEST / f"{name}.jpg"
        image.save(out, quality=92)
        print(f"{out.name}: {image.size[0]}x{image.size[1]}, {os.path.getsize(out) // 1024} KiB")


if __name__ == "__main__":
    main()
