"""Batching that drops the samples datasets could not decode (they return None) and counts them."""
from __future__ import annotations

from torch.utils.data import default_collate


def collate_skipping(samples: list[dict | None]) -> dict:
    """default_collate of the decodable samples plus "skipped": how many were None.

    A batch with no decodable sample is {"skipped": n} alone, so the trainer can count it
    and move on instead of crashing hours into a run.
    """
    kept = [sample for sample in samples if sample is not None]
    skipped = len(samples) - len(kept)
    if not kept:
        return {"skipped": skipped}
    batch = default_collate(kept)
    batch["skipped"] = skipped
    return batch
