"""Running trials, alone or as many jobs: one trial's training and measures, the worker loop, jobs on
one machine and their devices, leases and claims on running trials, repeats.
May use the top-level modules, storage and fronts; never export."""
