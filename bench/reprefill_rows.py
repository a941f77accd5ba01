"""Shared by the bench/ scripts that read `ckv bench reprefill` output."""

# Each system's own memory-cache policy (DefaultCachePolicyFor in src/pipeline/reprefill.cpp).
OWN_POLICY = {"contiguouskv": "attention", "contiguouskv-summaries": "attention",
              "contiguouskv-whole-units": "attention", "contiguouskv-coverage": "attention",
              "as-lru": "lru",
              "as-h2o-lru": "lru", "impress": "impress", "impress-vote": "impress"}


def has_own_policy(row):
    """The row ran with its system's own cache policy (cold rows and recompute have none)."""
    return row.get("cache_policy", "none") in ("none", OWN_POLICY.get(row["system"]))
