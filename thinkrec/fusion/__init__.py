"""Stage 3 of ThinkRec: user clusters, the expert gate and the experts that own them, the UMAP user map."""
