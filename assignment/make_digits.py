"""Build assignment/public/digits.npz (developer script; the tests never run it).

Source: the UCI "Optical Recognition of Handwritten Digits" data as bundled by
scikit-learn (`sklearn.datasets.load_digits`: 1797 images of 8x8 pixels, values 0..16).
Each image is flattened to 64 pixels and binarised (pixel >= 8 -> 1, else 0); a seeded
permutation (numpy default_rng(0)) splits it into 1500 training and 297 held-out images.
scikit-learn is needed only here, e.g.:

    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn numpy
    /tmp/skvenv/bin/python assignment/make_digits.py
"""
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent / "public" / "digits.npz"
SEED, N_TRAIN, THRESHOLD = 0, 1500, 8


def main() -> None:
    digits = load_digits()
    x = (digits.data.reshape(-1, 64) >= THRESHOLD).astype(np.uint8)  # (1797, 64) in {0, 1}
    y = digits.target.astype(np.uint8)
    order = np.random.default_rng(SEED).permutation(len(x))
    train, heldout = order[:N_TRAIN], order[N_TRAIN:]
    np.savez_compressed(
        OUT, train_x=x[train], train_y=y[train], heldout_x=x[heldout], heldout_y=y[heldout]
    )
    print(f"wrote {OUT}: {len(train)} train, {len(heldout)} held-out, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
