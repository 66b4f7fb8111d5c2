"""The engine: what runs a model -- training, evaluation, prediction, checkpoints, devices and precision.

``train`` (the loop), ``evaluate`` (score a checkpoint on splits), ``predict`` (landmarks of new images),
``checkpoint`` (run files), ``runtime`` (device, precision, seeds, optimiser, schedule, batches, GPU memory),
``cpu`` (CPU speed settings), ``distributed`` (torchrun), ``splits`` (a split's prepared cache),
``scoring`` (predictions against the truth in mm), ``outputs`` / ``run_folder`` (what a run writes and where),
``options`` (the command line's options, from the config) and ``benchmark`` (``farnet benchmark``).
Nothing here is imported by the core (the model, its losses and codecs).
"""
