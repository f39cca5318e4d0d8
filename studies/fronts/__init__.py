"""What the results mean: dominance and hypervolume, the front and its ranks, gap trials on the front,
rank correlations, and the evidence that a proxy ranks like a longer run.
May use the top-level modules and storage (to read a study); never workers or export."""
