"""Stage 3 of ThinkRec: user clusters, the expert gate, the user map and exact LoRA mixing."""
